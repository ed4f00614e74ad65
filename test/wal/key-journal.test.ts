// The key journal (WAL_DIR/keys/) on real files: keys written, read back at the next open merged
// with the WAL's, oldest first; torn and corrupt lines skipped; files deleted once past the window
// or past IDEMPOTENCY_MAX_KEYS (the clock injected); and the WAL removing a segment only once the
// journal holds its keys durably.
import { existsSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import t from 'tap';
import { Disk } from '../../src/disk/disk.js';
import { createWalMetrics } from '../../src/metrics/wal.js';
import { segmentName } from '../../src/wal/format.js';
import { KEYS_DIR, KeyJournal } from '../../src/wal/key-journal.js';
import { WriteAheadLog } from '../../src/wal/log.js';
import { recover } from '../../src/wal/replay.js';
import type { KeyAt } from '../../src/wal/replay.js';
import { Random } from '../chaos/random.js';
import { memoryLog } from '../helpers/log.js';
import { PowerLossDisk } from '../helpers/power-loss-disk.js';

const WINDOW = 600_000;
const key = (name: string, at: number): KeyAt => ({ key: name, hash: name.length, bytes: 10 + name.length, at });
const names = (keys: readonly KeyAt[]) => keys.map((k) => k.key);
const files = (walDir: string) => readdirSync(join(walDir, KEYS_DIR)).sort();

/** A journal over `walDir` on the clock `clock.now`. */
function open(walDir: string, clock: { now: number }, walKeys: KeyAt[] = [], { maxKeys = 100, disk }: { maxKeys?: number; disk?: Disk } = {}) {
  const { log, lines } = memoryLog();
  return KeyJournal.open(walDir, walKeys, { windowMs: WINDOW, maxKeys, now: () => clock.now, ...(disk && { disk }) }, log).then((opened) => ({ ...opened, lines }));
}

t.test('keys synced are read back at the next open, merged with the WAL\'s, deduplicated, oldest first', async (t) => {
  const dir = t.testdir();
  const clock = { now: 10_000 };
  const first = await open(dir, clock);
  t.same(first.keys, []);
  first.journal.add(key('a', 1000));
  first.journal.add(key('b', 3000));
  await first.journal.close();
  // The WAL still holds b (its segment not removed) and c, which the journal never got (a SIGKILL before its write).
  const second = await open(dir, clock, [key('b', 3000), key('c', 2000)]);
  t.same(second.keys, [key('a', 1000), key('c', 2000), key('b', 3000)], 'once each, oldest first');
  await second.journal.close();
  // c came from the WAL only: the journal now holds it too, so it outlives its segment.
  const third = await open(dir, clock);
  t.same(names(third.keys), ['a', 'c', 'b']);
  await third.journal.close();
  t.same(third.lines.filter((l) => l.level >= 40), [], 'nothing to warn of');
});

t.test('a file of more than the 1 MiB read at a time: every line across the chunks read back', async (t) => {
  const dir = t.testdir();
  const clock = { now: 100_000 };
  const { journal } = await open(dir, clock, [], { maxKeys: 100_000 });
  for (let i = 0; i < 12_000; i++) journal.add(key(`key-${i}-${'x'.repeat(60)}`, 1000 + i));
  await journal.close();
  t.equal(files(dir).length, 1);
  t.ok(readFileSync(join(dir, KEYS_DIR, files(dir)[0]!)).length > 1024 * 1024);
  const again = await open(dir, clock, [], { maxKeys: 100_000 });
  t.equal(again.keys.length, 12_000);
  t.same(again.keys.map((k) => k.at), Array.from({ length: 12_000 }, (_, i) => 1000 + i), 'every key, in order');
  t.same(again.lines.filter((l) => l.level >= 40), [], 'no line skipped at a chunk\'s edge');
  await again.journal.close();
});

t.test('a torn tail and corrupt lines are skipped and counted in one warn line; the rest is restored', async (t) => {
  const dir = t.testdir();
  const clock = { now: 10_000 };
  const opened = await open(dir, clock);
  opened.journal.add(key('good-1', 1000));
  opened.journal.add(key('flipped', 1100));
  opened.journal.add(key('good-2', 1200));
  await opened.journal.close();
  const [file] = files(dir);
  const path = join(dir, KEYS_DIR, file!);
  const text = readFileSync(path, 'utf8');
  const damaged = text.replace('flipped', 'flopped') + 'not a line at all\n' + '{"key":"torn","ha';
  writeFileSync(path, damaged);
  const again = await open(dir, clock);
  t.same(names(again.keys), ['good-1', 'good-2'], 'a checksum that fails, a line without one, a torn tail: skipped');
  const warns = again.lines.filter((l) => l.level >= 40);
  t.same(warns.map((l) => [l.msg, l.lines, l.file]), [['key journal: unreadable lines skipped (a torn tail or damage); their Idempotency-Keys are not restored', 3, file]]);
  await again.journal.close();
});

t.test('a journal file that cannot be read (here a symbolic link) is left alone and logged; the start goes on', async (t) => {
  const dir = t.testdir();
  const clock = { now: 10_000 };
  const opened = await open(dir, clock);
  opened.journal.add(key('kept', 1000));
  await opened.journal.close();
  symlinkSync('/etc/hostname', join(dir, KEYS_DIR, '000000000007.keys'));
  const again = await open(dir, clock);
  t.same(names(again.keys), ['kept']);
  t.same(again.lines.filter((l) => l.level >= 40).map((l) => [l.msg, l.file]), [['key journal: a file could not be read; its Idempotency-Keys are not restored', '000000000007.keys']]);
  await again.journal.close();
  t.ok(files(dir).includes('000000000007.keys'), 'left where it is');
});

t.test('a file whose keys are all past the window is deleted and its keys not restored', async (t) => {
  const dir = t.testdir();
  const clock = { now: 0 };
  const { journal } = await open(dir, clock);
  journal.add(key('old', 0));
  await journal.sync();
  // A quarter of the window later the next write goes to a new file.
  clock.now = WINDOW / 4 + 1;
  journal.add(key('newer', clock.now));
  await journal.sync();
  t.equal(files(dir).length, 2, 'a file per quarter of the window');
  clock.now = WINDOW + 1; // 'old' is past the window, 'newer' is not
  journal.add(key('newest', clock.now));
  await journal.sync();
  t.equal(files(dir).length, 2, 'the file holding only \'old\' is deleted at the next write');
  await journal.close();
  const again = await open(dir, clock);
  t.same(names(again.keys), ['newer', 'newest']);
  await again.journal.close();
  // Nothing written since, and the clock moves past every key: the next open deletes every file.
  clock.now = 3 * WINDOW;
  const later = await open(dir, clock, [key('expired-in-wal', WINDOW)]);
  t.same(later.keys, [], 'a WAL key past the window is not restored either');
  t.same(files(dir), []);
  await later.journal.close();
});

t.test('bounded by IDEMPOTENCY_MAX_KEYS: a file is deleted once the newer ones hold that many keys', async (t) => {
  const dir = t.testdir();
  const clock = { now: 10_000 };
  const { journal } = await open(dir, clock, [], { maxKeys: 4 });
  for (let i = 1; i <= 6; i++) {
    journal.add(key(`k${i}`, 1000 + i));
    await journal.sync(); // a file holds a quarter of IDEMPOTENCY_MAX_KEYS: here one key
  }
  t.equal(files(dir).length, 4);
  await journal.close();
  const again = await open(dir, clock, [], { maxKeys: 4 });
  t.same(names(again.keys), ['k3', 'k4', 'k5', 'k6'], 'the newest four');
  await again.journal.close();
});

t.test('the WAL removes a segment only after the journal holds its keys, fdatasynced', async (t) => {
  const dir = t.testdir();
  const calls: string[] = [];
  // The real fs, watched: which journal fdatasync and which segment unlink come in which order.
  const watched = {
    ...fs,
    open: async (...args: Parameters<typeof fs.open>) => {
      const handle = await fs.open(...args);
      const datasync = handle.datasync.bind(handle);
      if (String(args[0]).endsWith('.keys')) handle.datasync = async () => (await datasync(), void calls.push(`datasync ${readFileSync(String(args[0]), 'utf8').includes('"req-1"')}`));
      return handle;
    },
    unlink: async (file: Parameters<typeof fs.unlink>[0]) => (await fs.unlink(file), void calls.push(`unlink ${String(file).split('/').pop()}`)),
  };
  const disk = new Disk(watched);
  const clock = { now: Date.now() };
  const { log } = memoryLog();
  const { journal } = await open(dir, clock, [], { disk });
  const wal = new WriteAheadLog({ dir, maxBytes: 1 << 30, syncIntervalMs: 0, syncBytes: 1 << 20, segmentBytes: 1, disk, journal }, '0badcafe', [], 0, createWalMetrics(new Registry()), log);
  const ref = wal.nextRef(); // segment 1: every append past a segment's header starts a new one
  const synced = new Promise<boolean>((resolve) => wal.appendEvents(ref, clock.now, [0, 2], Buffer.from('{}'), resolve, { key: 'req-1', hash: 7, bytes: 2 }));
  t.equal(await synced, true);
  wal.settle('batch-1', new Map([[ref.seg, 1]]), undefined);
  while (!calls.includes(`unlink ${segmentName(ref.seg)}`)) await new Promise((resolve) => setImmediate(resolve));
  t.notOk(existsSync(join(dir, segmentName(ref.seg))));
  const synced1 = calls.indexOf('datasync true');
  t.ok(synced1 !== -1 && synced1 < calls.indexOf(`unlink ${segmentName(ref.seg)}`), `the key is fdatasynced in the journal before its segment goes: ${calls.join(', ')}`);
  await wal.close();
  t.equal(calls.at(-1)!.startsWith('unlink'), true);
  const { keys } = await open(dir, clock);
  t.same(names(keys), ['req-1'], 'the next start finds it with no segment left');
});

t.test('a journal that cannot be written is logged once and given up until a restart; sync() never rejects', async (t) => {
  const dir = t.testdir();
  // A disk that refuses the journal's file (EIO): a fault a healthy disk does not give.
  const failing = { ...fs, open: async (...args: Parameters<typeof fs.open>) => (String(args[0]).endsWith('.keys') ? Promise.reject(Object.assign(new Error('EIO: i/o error, open'), { code: 'EIO' })) : fs.open(...args)) };
  const { log, lines } = memoryLog();
  const { journal } = await KeyJournal.open(dir, [], { windowMs: WINDOW, maxKeys: 100, disk: new Disk(failing) }, log);
  journal.add(key('a', Date.now()));
  await journal.sync();
  journal.add(key('b', Date.now()));
  await journal.sync();
  await journal.close();
  const errors = lines.filter((l) => l.level >= 50);
  t.same(errors.map((l) => l.msg), ['key journal write failed; Idempotency-Keys are kept across a restart only while their WAL segment is, until the server restarts; check WAL_DIR and its volume']);
  t.same(files(dir), []);
});

t.test('a key is journaled only once its WAL record is on disk: never for a request not acknowledged', async (t) => {
  const dir = t.testdir();
  const clock = { now: Date.now() };
  const { log } = memoryLog();
  const { journal } = await open(dir, clock);
  // A group window of 10 s: the record waits in the log's queue until close() writes it.
  const wal = new WriteAheadLog({ dir, maxBytes: 1 << 30, syncIntervalMs: 10_000, syncBytes: 1 << 20, segmentBytes: 1 << 20, journal }, '0badcafe', [], 0, createWalMetrics(new Registry()), log);
  const told: boolean[] = [];
  wal.appendEvents(wal.nextRef(), clock.now, [0, 2], Buffer.from('{}'), (ok) => told.push(ok), { key: 'queued', hash: 7, bytes: 2 });
  await journal.sync();
  const journaled = () => files(dir).map((name) => readFileSync(join(dir, KEYS_DIR, name), 'utf8')).join('');
  t.notMatch(journaled(), /queued/, 'not in the journal while its record is not written (a crash now: never acknowledged)');
  await wal.close();
  t.same(told, [true]);
  t.match(journaled(), /"key":"queued"/, 'written and acknowledged: journaled, synced at close');
});

t.test('a power cut after a key\'s segment was removed: the journal still has it; one not yet journaled is in the WAL', async (t) => {
  const dir = t.testdir();
  // The test disk that forgets what was not fsynced (files' data, directories' entries) when the power is cut.
  const power = new PowerLossDisk({ random: new Random(7) });
  const disk = new Disk(power.fs);
  const clock = { now: Date.now() };
  const { log } = memoryLog();
  const { journal } = await open(dir, clock, [], { disk });
  const wal = new WriteAheadLog({ dir, maxBytes: 1 << 30, syncIntervalMs: 0, syncBytes: 1 << 20, segmentBytes: 1, disk, journal }, '0badcafe', [], 0, createWalMetrics(new Registry()), log);
  const append = (name: string) => {
    const ref = wal.nextRef();
    return { ref, synced: new Promise<boolean>((resolve) => wal.appendEvents(ref, clock.now, [0, 2], Buffer.from('{}'), resolve, { key: name, hash: 7, bytes: 2 })) };
  };
  const first = append('removed-segment');
  t.equal(await first.synced, true);
  wal.settle('batch-1', new Map([[first.ref.seg, 1]]), undefined);
  while (existsSync(join(dir, segmentName(first.ref.seg)))) await new Promise((resolve) => setImmediate(resolve));
  const second = append('in-the-wal');
  t.equal(await second.synced, true);
  await power.cut();
  await wal.close();
  const recovered = await recover(dir, 'after-the-cut', createWalMetrics(new Registry()), log);
  t.teardown(() => recovered.lock.release());
  t.same(names(recovered.keys), ['in-the-wal'], 'the WAL has only the key whose segment is left');
  const after = await open(dir, clock, recovered.keys);
  t.same(names(after.keys).sort(), ['in-the-wal', 'removed-segment']);
  await after.journal.close();
});

// Found by a red-team review: a removal pass syncs the journal once, then removes what is queued;
// a segment settled while an unlink is in flight joins that pass. Its keys, added after the sync,
// must still be durable before its unlink. (The unlink held back on a gate: the order is the point,
// the files are real.)
t.test('a segment queued while a removal pass runs is removed only after its keys are synced too', async (t) => {
  const dir = t.testdir();
  let release = (): void => {};
  const gate = new Promise<void>((resolve) => (release = resolve));
  let held = false;
  const journaledAtUnlink = new Map<string, string>();
  const journaled = () => files(dir).map((name) => readFileSync(join(dir, KEYS_DIR, name), 'utf8')).join('');
  const disk = new Disk({
    ...fs,
    unlink: async (file: Parameters<typeof fs.unlink>[0]) => {
      if (!held) {
        held = true;
        await gate;
      }
      journaledAtUnlink.set(String(file).split('/').pop()!, journaled());
      await fs.unlink(file);
    },
  });
  const { journal } = await open(dir, { now: Date.now() }, [], { disk });
  const { log } = memoryLog();
  const wal = new WriteAheadLog({ dir, maxBytes: 1 << 30, syncIntervalMs: 0, syncBytes: 1 << 20, segmentBytes: 1, disk, journal }, '0badcafe', [], 0, createWalMetrics(new Registry()), log);
  const append = (name: string) => {
    const ref = wal.nextRef();
    const synced = new Promise<boolean>((resolve) => wal.appendEvents(ref, Date.now(), [0, 2], Buffer.from('{}'), resolve, { key: name, hash: 7, bytes: 2 }));
    return { ref, synced };
  };
  const first = append('first');
  t.equal(await first.synced, true);
  const second = append('second');
  t.equal(await second.synced, true);
  wal.settle('b1', new Map([[first.ref.seg, 1]]), undefined); // a pass begins: the journal synced, then the unlink held
  while (!held) await new Promise((resolve) => setImmediate(resolve));
  t.equal(await append('third').synced, true); // the head moves past the second key's segment
  wal.settle('b2', new Map([[second.ref.seg, 1]]), undefined); // that segment joins the pass under way
  release();
  while (existsSync(join(dir, segmentName(second.ref.seg)))) await new Promise((resolve) => setImmediate(resolve));
  t.match(journaledAtUnlink.get(segmentName(first.ref.seg)), /"first"/);
  t.match(journaledAtUnlink.get(segmentName(second.ref.seg)), /"second"/, 'the second key was in the journal file when its segment was unlinked');
  await wal.close();
});
