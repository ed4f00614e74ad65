// What a DlqStore is opened with (DlqOptions) and given to spill (BatchToSave), each option seen
// doing what its comment says on a real directory: the batch's fields land in the file, `now`
// stamps the spill, `instanceId` names the lock's holder, `repair` decides whether the store owns
// the directory, and `disk` carries every file-system call.
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { Disk, type DiskFs } from '../../src/disk/disk.js';
import { decodeMeta } from '../../src/dlq/file.js';
import { DlqLocked, LOCK_FILE } from '../../src/dlq/lock.js';
import type { BatchToSave } from '../../src/dlq/options.js';
import { batch, setup, T0 } from '../helpers/dlq.js';
import { tempDir } from '../helpers/temp.js';

t.test('BatchToSave: the id names the file; key, events and receive times are its metadata; `now` is its spill time', async (t) => {
  const { store, dir, clock } = await setup(t);
  const { gzip } = batch(2);
  const toSave: BatchToSave = { id: `${T0}-opts-0001`, key: `raw/2027/01/15/08/${T0}-opts-0001.jsonl.gz`, events: 2, firstReceivedAt: T0 - 20, lastReceivedAt: T0 - 10 };
  clock.now = T0 + 12_345;
  t.ok(await store.save(toSave, gzip));
  const { meta } = decodeMeta(readFileSync(join(dir, `${T0}-opts-0001.jsonl.gz`)));
  t.match(meta, { key: toSave.key, events: 2, firstReceivedAt: T0 - 20, lastReceivedAt: T0 - 10, spilledAt: T0 + 12_345 });
  t.equal(store.oldestSpilledAt, T0 + 12_345);
});

t.test('instanceId is written in the lock, and a second owner of the directory is told who holds it', async (t) => {
  const { dir } = await setup(t, { instanceId: 'task-owner' });
  t.equal(JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8')).instanceId, 'task-owner');
  const err = await setup(t, { dir, instanceId: 'task-second' }).catch((e: unknown) => e);
  t.type(err, DlqLocked);
  t.equal((err as DlqLocked).holder?.instanceId, 'task-owner');
});

t.test('repair: false only reads: it opens beside the owner, takes no lock, and makes no directory', async (t) => {
  const owner = await setup(t);
  const b = batch(3);
  await owner.store.save(b.batch, b.gzip);
  const reader = await setup(t, { dir: owner.dir, repair: false });
  t.equal(reader.store.files, 1, 'sees the owner\'s file');
  t.equal(reader.store.unusable, undefined);
  const missing = join(tempDir(t, 'ro'), 'never-made');
  const absent = await setup(t, { dir: missing, repair: false });
  t.notOk(existsSync(missing), 'a reader does not create DLQ_DIR');
  t.match(absent.store.unusable, /ENOENT/);
});

t.test('disk: every file-system call goes through the one given', async (t) => {
  const dir = tempDir(t, 'dlq');
  const seen: string[] = [];
  const record = <K extends keyof DiskFs>(name: K): DiskFs[K] =>
    (async (...args: unknown[]) => {
      seen.push(`${name} ${String(args[0])}`);
      return (fs[name] as (...a: unknown[]) => unknown)(...args);
    }) as DiskFs[K];
  const recorded: DiskFs = { open: record('open'), rename: record('rename'), unlink: record('unlink'), lstat: record('lstat'), mkdir: record('mkdir'), lutimes: record('lutimes'), readdir: record('readdir') };
  const { store } = await setup(t, { dir, disk: new Disk(recorded) });
  const b = batch(2);
  await store.save(b.batch, b.gzip);
  const file = store.oldest()!;
  t.ok(await store.read(file));
  t.ok(await store.delete(file, 'reuploaded'));
  const name = join(dir, `${b.batch.id}.jsonl.gz`);
  for (const call of [`mkdir ${dir}`, `open ${join(dir, LOCK_FILE)}`, `readdir ${dir}`, `open ${join(dir, `.tmp-${b.batch.id}.jsonl.gz`)}`, `rename ${join(dir, `.tmp-${b.batch.id}.jsonl.gz`)}`, `open ${name}`, `unlink ${name}`]) {
    t.ok(seen.includes(call), call);
  }
  t.notOk(existsSync(name));
});
