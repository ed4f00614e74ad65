// The DLQ store on real files: atomic durable spill, capacity and TTL eviction with exact counts
// (TTL with an injected clock), the start-up scan, quarantine, and a directory that cannot be written.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { gunzipSync, gzipSync } from 'node:zlib';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import t, { type Test } from 'tap';
import { decodeMeta } from '../../src/dlq/file.js';
import { DlqStore, type DlqOptions } from '../../src/dlq/store.js';
import { createDlqMetrics } from '../../src/metrics/dlq.js';
import { tempDir } from '../helpers/temp.js';

const T0 = 1_800_000_000_000;

async function setup(t: Test, options: Partial<DlqOptions> = {}) {
  const clock = { now: T0 };
  const logs: { level: number; msg: string }[] = [];
  const log = pino(
    { level: 'debug' },
    new Writable({
      write(chunk: Buffer, _e, done) {
        logs.push(JSON.parse(chunk.toString()));
        done();
      },
    }),
  );
  const registry = new Registry();
  const metrics = createDlqMetrics(registry);
  const dir = options.dir ?? tempDir(t, 'dlq');
  const open = () => DlqStore.open({ dir, maxBytes: 1 << 30, maxFiles: 1000, ttlSeconds: 3600, now: () => clock.now, repair: true, ...options }, metrics, log);
  const store = await open();
  const value = async (name: string, labels = '') => {
    const line = (await registry.metrics()).split('\n').find((l) => l.startsWith(`${name}${labels} `));
    return line === undefined ? 0 : Number(line.split(' ').pop());
  };
  return { store, dir, clock, logs, value, open };
}

let seq = 0;
function batch(events: number, at = T0) {
  const id = `${at}-unit-000000-${(seq++).toString(36).padStart(8, '0')}`;
  const lines = Array.from({ length: events }, (_, i) => `{"received_at":${at},"event":{"i":${i}}}\n`).join('');
  return { batch: { id, key: `raw/2027/01/15/08/${id}.jsonl.gz`, events, firstReceivedAt: at, lastReceivedAt: at }, gzip: gzipSync(lines), lines };
}

t.test('a spilled batch is one complete gzip file under its final name, readable by any gzip tool', async (t) => {
  const { store, dir } = await setup(t);
  const { batch: b, gzip, lines } = batch(3);
  await store.save(b, gzip);
  t.same(readdirSync(dir).sort(), [`${b.id}.jsonl.gz`, 'corrupt'].sort(), 'no temp file left beside it');
  const file = readFileSync(join(dir, `${b.id}.jsonl.gz`));
  t.equal(gunzipSync(file).toString(), lines, 'zcat shows the JSON lines');
  t.match(decodeMeta(file).meta, { v: 1, key: b.key, events: 3, firstReceivedAt: T0, spilledAt: T0 });
  const read = await store.read(store.oldest()!);
  t.ok(read!.gzip.equals(gzip), 'the object to re-upload is byte for byte the gzip first PUT');
  t.equal(store.files, 1);
  t.equal(store.events, 3);
  t.equal(store.bytes, file.length);
});

t.test('DLQ_MAX_FILES: the oldest files are evicted, their events counted, each named in a warn line', async (t) => {
  const { store, clock, logs, value } = await setup(t, { maxFiles: 3 });
  const saved = [];
  for (let i = 0; i < 5; i++) {
    clock.now = T0 + i * 1000;
    saved.push(batch(i + 1));
    await store.save(saved[i]!.batch, saved[i]!.gzip);
  }
  t.same(store.list().map((f) => f.meta.events), [3, 4, 5], 'the three newest stay');
  t.equal(await value('dlq_events_dropped_total', '{reason="capacity"}'), 1 + 2);
  t.same(
    logs.filter((l) => l.level === 40).map((l) => l.msg),
    [`DLQ capacity → removed=${saved[0]!.batch.id}.jsonl.gz`, `DLQ capacity → removed=${saved[1]!.batch.id}.jsonl.gz`],
  );
});

t.test('concurrent spills over capacity: every evicted event counted once, none twice', async (t) => {
  const { store, value, logs } = await setup(t, { maxFiles: 3 });
  await Promise.all(Array.from({ length: 10 }, (_, i) => batch(i + 1)).map((b) => store.save(b.batch, b.gzip)));
  const dropped = await value('dlq_events_dropped_total', '{reason="capacity"}');
  t.equal(store.files, 3);
  t.equal(store.events + dropped, 55, 'kept + dropped = every event spilled (1 + 2 + ... + 10)');
  t.equal(logs.filter((l) => l.msg.startsWith('DLQ capacity → removed=')).length, 7, 'one log line per evicted file');
});

t.test('DLQ_MAX_BYTES: evicts oldest until the bytes fit', async (t) => {
  const first = batch(10);
  const size = (await setup(t)).store; // measure one file's size
  await size.save(first.batch, first.gzip);
  const oneFile = size.bytes;
  const { store, value } = await setup(t, { maxBytes: oneFile * 2 + 10 });
  for (let i = 0; i < 4; i++) {
    const b = batch(10);
    await store.save(b.batch, b.gzip);
  }
  t.equal(store.files, 2);
  t.ok(store.bytes <= oneFile * 2 + 10);
  t.equal(await value('dlq_events_dropped_total', '{reason="capacity"}'), 20);
});

t.test('DLQ_TTL_SECONDS: files older than the TTL are deleted at the sweep, counted exactly', async (t) => {
  const { store, clock, value, logs } = await setup(t, { ttlSeconds: 60 });
  const old = batch(7);
  await store.save(old.batch, old.gzip);
  clock.now = T0 + 30_000;
  const young = batch(2);
  await store.save(young.batch, young.gzip);
  clock.now = T0 + 61_000;
  await store.sweep();
  t.same(store.list().map((f) => f.meta.events), [2]);
  t.equal(await value('dlq_files_expired_total'), 1);
  t.equal(await value('dlq_events_dropped_total', '{reason="ttl"}'), 7);
  t.ok(logs.some((l) => l.msg === `DLQ TTL → removed=${old.batch.id}.jsonl.gz`));
  clock.now = T0 + 91_000;
  await store.sweep();
  t.equal(store.files, 0);
  t.equal(await value('dlq_events_dropped_total', '{reason="ttl"}'), 9);
});

t.test('start-up: files of an earlier run are indexed oldest first, temp leftovers removed, corrupt files moved aside', async (t) => {
  const first = await setup(t);
  const a = batch(1);
  const b = batch(2);
  first.clock.now = T0 + 5;
  await first.store.save(b.batch, b.gzip);
  first.clock.now = T0 + 9;
  await first.store.save(a.batch, a.gzip);
  const dir = first.dir;
  writeFileSync(join(dir, `.tmp-${batch(1).batch.id}.jsonl.gz`), 'half a file');
  writeFileSync(join(dir, 'garbage.jsonl.gz'), 'not gzip at all');
  const whole = readFileSync(join(dir, `${a.batch.id}.jsonl.gz`));
  const truncated = batch(1).batch.id;
  writeFileSync(join(dir, `${truncated}.jsonl.gz`), whole.subarray(0, whole.length - 9)); // header fine, body cut
  writeFileSync(join(dir, 'README.txt'), 'an operator note: left alone');

  const again = await setup(t, { dir });
  t.equal(again.store.files, 3, 'the truncated file passes the header scan; the body check catches it later');
  t.notOk(readdirSync(dir).some((n) => n.startsWith('.tmp-')), 'temp leftover removed');
  t.ok(existsSync(join(dir, 'corrupt', 'garbage.jsonl.gz')), 'bad header: moved aside, not deleted');
  t.ok(existsSync(join(dir, 'README.txt')));
  const order = again.store.list().map((f) => f.name);
  t.same(order.slice(0, 2), [`${b.batch.id}.jsonl.gz`, `${a.batch.id}.jsonl.gz`], 'oldest spill first');
  const truncatedFile = again.store.list().find((f) => f.name === `${truncated}.jsonl.gz`)!;
  t.equal(await again.store.read(truncatedFile), undefined, 'a damaged body is never handed out for upload');
  t.ok(existsSync(join(dir, 'corrupt', `${truncated}.jsonl.gz`)));
  t.equal(await again.value('dlq_files_corrupt_total'), 2);
  t.equal(again.store.files, 2);
});

t.test('a DLQ directory that cannot be written: logged, counted as dropped, no throw', async (t) => {
  const parent = tempDir(t, 'notadir');
  writeFileSync(join(parent, 'file'), 'a file where the DLQ directory should be');
  const { store, logs, value } = await setup(t, { dir: join(parent, 'file', 'dlq') });
  t.ok(logs.some((l) => l.level === 50 && l.msg.startsWith('DLQ directory unusable: ENOTDIR')));
  const b = batch(4);
  await store.save(b.batch, b.gzip);
  t.ok(logs.some((l) => l.level === 50 && /^local DLQ save failed: ENOTDIR/.test(l.msg)));
  t.equal(await value('dlq_events_dropped_total', '{reason="write_failed"}'), 4);
  t.equal(await value('dlq_write_failures_total'), 1);
  t.equal(store.files, 0);
});

t.test('read-only mode (the dlq command) neither removes temp files nor moves corrupt ones', async (t) => {
  const dir = tempDir(t, 'ro');
  mkdirSync(join(dir, 'corrupt'));
  writeFileSync(join(dir, '.tmp-x.jsonl.gz'), 'a live server may be writing this');
  writeFileSync(join(dir, 'bad.jsonl.gz'), 'bad');
  const { store } = await setup(t, { dir, repair: false });
  t.equal(store.files, 0);
  t.ok(existsSync(join(dir, '.tmp-x.jsonl.gz')));
  t.ok(existsSync(join(dir, 'bad.jsonl.gz')));
});
