// recover() (two streamed passes) rebuilds exactly what the earlier whole-WAL reader rebuilt: the
// same batches, pieces, entries, segment counts and losses, on random logs with batches across
// segments, requests split by cuts, done records, deleted first segments and torn tails. The reference below is that reader (readRecords on each file, every record kept).
import { cpSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import t from 'tap';
import { Disk } from '../../src/disk/disk.js';
import { createWalMetrics } from '../../src/metrics/wal.js';
import { LINE_OVERHEAD_BYTES } from '../../src/upload/batcher.js';
import { comparePositions, CUT, type CutRecord, decodeEvents, DONE, encodeEvents, encodeJson, EVENTS, KEY, type Position, readRecords, SEGMENT_HEADER_BYTES, segmentHeader, segmentName, segmentSeq } from '../../src/wal/format.js';
import { recover } from '../../src/wal/replay.js';
import { Random } from '../chaos/random.js';
import { PowerLossDisk } from '../helpers/power-loss-disk.js';

const root = mkdtempSync(join(tmpdir(), 'ingest-replay-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));

/** A deterministic generator, so that a failure names a seed that reproduces it. */
function rng(seed: number): (n: number) => number {
  let s = seed >>> 0 || 1;
  return (n) => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) % n;
  };
}

interface Ev {
  pos: Position;
}

/** A log as the server writes it: requests, contiguous batches cut after their events, some done. */
function writeLog(dir: string, seed: number): void {
  const r = rng(seed);
  const segs: Buffer[][] = [[segmentHeader('0badcafe')]];
  let off = SEGMENT_HEADER_BYTES;
  const events: Ev[] = [];
  let batched = 0;
  const cuts: CutRecord[] = [];
  const append = (bufs: Buffer[]): number => {
    if (off > 400 && r(3) === 0) {
      segs.push([segmentHeader('0badcafe')]);
      off = SEGMENT_HEADER_BYTES;
    }
    const at = off;
    segs.at(-1)!.push(...bufs);
    off += bufs.reduce((n, b) => n + b.length, 0);
    return at;
  };
  for (let step = 0; step < 60; step++) {
    const what = r(4);
    if (what <= 1) {
      const n = 1 + r(4);
      const parts = Array.from({ length: n }, (_, i) => JSON.stringify({ s: seed, step, i }));
      const spans: number[] = [];
      let at = 1;
      for (const p of parts) {
        spans.push(at, at + p.length);
        at += p.length + 1;
      }
      const recOff = append(encodeEvents(1_800_000_000_000 + step, spans, Buffer.from(`[${parts.join(',')}]`)));
      for (let i = 0; i < n; i++) events.push({ pos: [segs.length - 1, recOff, i] });
    } else if (what === 2 && batched < events.length) {
      const n = 1 + r(Math.min(6, events.length - batched));
      const first = events[batched]!.pos;
      const last = events[batched + n - 1]!.pos;
      const id = `b${seed}-${cuts.length}`;
      const cut: CutRecord = { id, key: `raw/${id}.jsonl.gz`, events: n, first: 1, last: 2, from: first, to: [last[0], last[1], last[2] + 1] };
      batched += n;
      cuts.push(cut);
      append([encodeJson(CUT, cut)]);
    } else if (what === 3 && cuts.length > 0) {
      append([encodeJson(DONE, { id: cuts[r(cuts.length)]!.id })]);
    }
  }
  mkdirSync(dir, { recursive: true });
  segs.forEach((bufs, seq) => writeFileSync(join(dir, segmentName(seq)), Buffer.concat(bufs)));
  const names = readdirSync(dir).sort();
  // Sometimes: the first segments gone (checkpointed), a torn tail.
  if (names.length > 2 && r(3) === 0) rmSync(join(dir, names.shift()!));
  if (r(3) === 0) writeFileSync(join(dir, names.at(-1)!), Buffer.concat([readFileSync(join(dir, names.at(-1)!)), Buffer.from([5, 0, 0, 0, 1, 2, 3])]));
  // Corruption (a flipped byte) is test/wal/corruption.test.ts's: this reference predates skipping it.
}

/** The reader before the two passes (src/wal/replay.ts until November 2026, with its rule for events no cut covers), without its repairs on disk. */
function reference(dir: string) {
  const seqs = readdirSync(dir).map(segmentSeq).filter((s) => s !== undefined).sort((a, b) => a - b);
  const segments: { seq: number; size: number; unsettled: number; pendingCuts: number }[] = [];
  const events: { seg: number; off: number; count: number; spans: number[]; body: Buffer }[] = [];
  const cuts: { cut: CutRecord; seg: number }[] = [];
  const done = new Set<string>();
  for (const seq of seqs) {
    const read = readRecords(readFileSync(join(dir, segmentName(seq))));
    if (read.good < SEGMENT_HEADER_BYTES) continue;
    segments.push({ seq, size: read.good, unsettled: 0, pendingCuts: 0 });
    for (const record of read.records) {
      if (record.type === EVENTS) {
        const { spans, body } = decodeEvents(record.payload);
        events.push({ seg: seq, off: record.off, count: spans.length / 2, spans, body });
      } else if (record.type === CUT) cuts.push({ cut: JSON.parse(record.payload.toString()) as CutRecord, seg: seq });
      else if (record.type === DONE) done.add((JSON.parse(record.payload.toString()) as { id: string }).id);
    }
  }
  const bySeq = new Map(segments.map((s) => [s.seq, s]));
  const firstPresent = segments[0]?.seq ?? Number.POSITIVE_INFINITY;
  cuts.sort((a, b) => comparePositions(a.cut.from, b.cut.from));
  const before = (e: { seg: number; off: number }, p: Position) => e.seg < p[0] || (e.seg === p[0] && e.off < p[1]);
  const batches: unknown[] = [];
  const cutSegs: [string, number][] = [];
  let lost = 0;
  let total = 0;
  let i = 0;
  const inCuts = new Map<(typeof events)[number], [number, number][]>();
  for (const { cut, seg: cutSeg } of cuts) {
    while (i < events.length && before(events[i]!, cut.from)) i++;
    const pieces: unknown[] = [];
    let found = 0;
    let bytes = 0;
    for (let j = i; j < events.length && (before(events[j]!, cut.to) || (events[j]!.seg === cut.to[0] && events[j]!.off === cut.to[1])); j++) {
      const at = events[j]!;
      const from = at.seg === cut.from[0] && at.off === cut.from[1] ? cut.from[2] : 0;
      const to = at.seg === cut.to[0] && at.off === cut.to[1] ? cut.to[2] : at.count;
      if (to <= from) continue;
      inCuts.set(at, [...(inCuts.get(at) ?? []), [from, to]]);
      pieces.push([at.seg, at.off, from, to, at.body.toString()]);
      found += to - from;
      for (let k = from; k < to; k++) bytes += LINE_OVERHEAD_BYTES + at.spans[2 * k + 1]! - at.spans[2 * k]!;
    }
    if (done.has(cut.id)) continue;
    if (found !== cut.events) {
      if (cut.from[0] >= firstPresent) lost += cut.events;
      continue;
    }
    batches.push([cut.id, found, bytes, pieces]);
    cutSegs.push([cut.id, cutSeg]);
    bySeq.get(cutSeg)!.pendingCuts++;
    for (const p of pieces as [number, number, number, number][]) bySeq.get(p[0])!.unsettled += p[3] - p[2];
    total += found;
  }
  // Every event no cut covers is sent again: after the last cut, or before it when damage took its cut record.
  const entries: unknown[] = [];
  for (const at of events) {
    let from = 0;
    for (const [cutFrom, cutTo] of [...(inCuts.get(at) ?? []), [at.count, at.count]].sort((x, y) => x[0]! - y[0]!) as [number, number][]) {
      if (cutFrom > from) {
        entries.push([at.seg, at.off, from, cutFrom - from, at.spans.slice(2 * from, 2 * cutFrom), at.body.toString()]);
        bySeq.get(at.seg)!.unsettled += cutFrom - from;
        total += cutFrom - from;
      }
      from = Math.max(from, cutTo);
    }
  }
  return { segments, batches, cutSegs: cutSegs.sort(), entries, events: total, lost };
}

t.test('the same result as the whole-WAL reader, on 150 random logs', async (t) => {
  const log = pino({ level: 'silent' });
  let withBatches = 0;
  let withEntries = 0;
  for (let seed = 1; seed <= 150; seed++) {
    const dir = join(root, `w${seed}`);
    writeLog(dir, seed);
    const copy = join(root, `c${seed}`);
    cpSync(dir, copy, { recursive: true });
    const expected = reference(copy);
    const got = await recover(dir, 'test', createWalMetrics(new Registry()), log);
    got.lock.release();
    const actual = {
      segments: got.segments.map(({ seq, size, unsettled, pendingCuts }) => ({ seq, size, unsettled, pendingCuts })),
      batches: got.batches.map((b) => [b.id, b.events, b.bytes, b.segments.map((s) => [s.entry.wal!.seg, s.entry.wal!.off, s.from, s.to, s.entry.body.toString()])]),
      cutSegs: [...got.cutSegs].sort(),
      entries: got.entries.map((e) => [e.wal!.seg, e.wal!.off, e.wal!.base, e.count, e.spans, e.body.toString()]),
      events: got.events,
      lost: got.lost,
    };
    if (expected.batches.length > 0) withBatches++;
    if (expected.entries.length > 0) withEntries++;
    if (JSON.stringify(actual) !== JSON.stringify(expected)) {
      t.same(actual, expected, `seed ${seed}`);
      return;
    }
    rmSync(dir, { recursive: true });
    rmSync(copy, { recursive: true });
  }
  t.ok(withBatches > 25 && withEntries > 25, `logs with batches to resend: ${withBatches}, with events after the last cut: ${withEntries}`);
});

t.test('the Idempotency-Keys the log holds come back in log order, from settled batches too; a key cut with a torn tail is not', async (t) => {
  const events = () => encodeEvents(1_800_000_000_123, [1, 8], Buffer.from('[{"a":1}]'));
  const key = (k: string, at: number) => encodeJson(KEY, { key: k, hash: 3, bytes: 9, at });
  const settled = Buffer.concat([segmentHeader('0badcafe'), ...events(), key('first', 1), encodeJson(CUT, { id: 'b', key: 'raw/b.jsonl.gz', events: 1, first: 1, last: 1, from: [0, SEGMENT_HEADER_BYTES, 0], to: [0, SEGMENT_HEADER_BYTES, 1] }), encodeJson(DONE, { id: 'b' })]);
  const torn = key('torn', 3);
  const last = Buffer.concat([segmentHeader('0badcafe'), ...events(), key('second', 2), ...events(), torn.subarray(0, torn.length - 3)]);
  const dir = mkdtempSync(join(tmpdir(), 'ingest-wal-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, segmentName(0)), settled);
  writeFileSync(join(dir, segmentName(1)), last);
  const got = await recover(dir, 'test', createWalMetrics(new Registry()), pino({ level: 'silent' }));
  got.lock.release();
  t.same(got.keys, [{ key: 'first', hash: 3, bytes: 9, at: 1 }, { key: 'second', hash: 3, bytes: 9, at: 2 }]);
  t.equal(got.events, 2, 'the events of both requests of the last segment are replayed, the one whose key was torn too');
});

t.test('damage in a segment: the copy to corrupt/ is a file of its own, never written through a symlink', async (t) => {
  const events = () => encodeEvents(1_800_000_000_123, [1, 8], Buffer.from('[{"a":1}]'));
  const segment = Buffer.concat([segmentHeader('0badcafe'), ...events(), ...events()]);
  const damaged = Buffer.from(segment);
  damaged[SEGMENT_HEADER_BYTES + 4]! ^= 0x40; // in the first record of a segment that is not the last: damage, not a torn tail
  const quiet = pino({ level: 'silent' });

  const dir = mkdtempSync(join(tmpdir(), 'ingest-wal-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, segmentName(0)), damaged);
  writeFileSync(join(dir, segmentName(1)), segment);
  const got = await recover(dir, 'test', createWalMetrics(new Registry()), quiet);
  got.lock.release();
  t.same(readFileSync(join(dir, 'corrupt', segmentName(0))), damaged, 'the damaged segment, whole, in corrupt/');
  t.notOk(lstatSync(join(dir, 'corrupt', segmentName(0))).isSymbolicLink());

  const linked = mkdtempSync(join(tmpdir(), 'ingest-wal-'));
  const elsewhere = mkdtempSync(join(tmpdir(), 'ingest-elsewhere-'));
  t.teardown(() => rmSync(linked, { recursive: true, force: true }));
  t.teardown(() => rmSync(elsewhere, { recursive: true, force: true }));
  writeFileSync(join(linked, segmentName(0)), damaged);
  writeFileSync(join(linked, segmentName(1)), segment);
  symlinkSync(elsewhere, join(linked, 'corrupt'));
  await t.rejects(recover(linked, 'test', createWalMetrics(new Registry()), quiet), { code: 'ELOOP' }, 'recovery stops, for an operator to fix');
  t.same(readdirSync(elsewhere), [], 'on main the segment was copied into the link\'s target');
  t.same(readFileSync(join(linked, segmentName(0))), damaged, 'the segment untouched');
});

t.test('every read and repair goes through the disk it is given: a power cut before any change it makes leaves a WAL the next start recovers the same', async (t) => {
  const events = (text: string) => encodeEvents(1_800_000_000_123, [1, text.length - 1], Buffer.from(`[${text}]`));
  const damaged = Buffer.concat([segmentHeader('0badcafe'), ...events('{"a":1}'), ...events('{"b":2}'), ...events('{"c":3}')]);
  damaged[damaged.length - 40]! ^= 0x40; // in a record with one after it, in a segment before the last: corruption, copied to corrupt/
  const torn = Buffer.concat(events('{"e":5}'));
  const last = Buffer.concat([segmentHeader('0badcafe'), ...events('{"d":4}'), torn.subarray(0, torn.length - 3)]); // a torn tail: truncated
  const quiet = pino({ level: 'silent' });
  const wal = (name: string) => {
    const dir = join(root, name);
    mkdirSync(dir);
    writeFileSync(join(dir, segmentName(0)), damaged);
    writeFileSync(join(dir, segmentName(1)), last);
    return dir;
  };
  const summary = (got: Awaited<ReturnType<typeof recover>>) => ({
    segments: got.segments,
    nextSeq: got.nextSeq,
    entries: got.entries.map((e) => [e.wal!.seg, e.wal!.off, e.body.toString()]),
    events: got.events,
  });
  const recovered = async (dir: string, disk?: Disk) => {
    const got = await recover(dir, 'test', createWalMetrics(new Registry()), quiet, disk);
    got.lock.release();
    return summary(got);
  };
  const expected = await recovered(wal('uncut'));
  t.equal(expected.events, 3, 'the damaged record and the torn one skipped');

  const ops: string[] = [];
  const watchedDir = wal('watched');
  const watched = new PowerLossDisk({ cutAt: (op) => ops.push(`${op.name} ${relative(watchedDir, op.path)}`) < 0, random: new Random(1) });
  t.same(await recovered(watchedDir, new Disk(watched.fs)), expected, 'through the power-loss disk, powered on: the same');
  await watched.cut();
  for (const op of ['readdir ', `read ${segmentName(0)}`, `read ${segmentName(1)}`, 'mkdir corrupt', `rename corrupt/.tmp-${segmentName(0)}`, 'sync corrupt', `truncate ${segmentName(1)}`, `sync ${segmentName(1)}`]) {
    t.ok(ops.includes(op), `${op}: through the disk`);
  }

  // A cut before a read leaves what a cut before the next change leaves: cut before each change.
  const reads = new Set(['read', 'readFile', 'stat', 'lstat', 'readdir']);
  for (const [i, op] of ops.entries()) {
    if (reads.has(op.split(' ')[0]!)) continue;
    const dir = wal(`cut${i + 1}`);
    const power = new PowerLossDisk({ cutAt: (cut) => cut.n === i + 1, random: new Random(i) });
    await t.rejects(recovered(dir, new Disk(power.fs)), { code: 'EIO' }, `cut before ${op}: the power cut stops the replay`);
    await power.reverted;
    t.same(await recovered(dir), expected, `cut before ${op}: the next start recovers the same`);
    t.same(readFileSync(join(dir, 'corrupt', segmentName(0))), damaged, 'and copies the damaged segment to corrupt/');
  }
});

t.test('a segment that is a symbolic link is never read through: recovery stops (ELOOP), for an operator to fix', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ingest-wal-'));
  const elsewhere = mkdtempSync(join(tmpdir(), 'ingest-elsewhere-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.teardown(() => rmSync(elsewhere, { recursive: true, force: true }));
  writeFileSync(join(elsewhere, 'target'), Buffer.concat([segmentHeader('0badcafe'), ...encodeEvents(1_800_000_000_123, [1, 8], Buffer.from('[{"a":1}]'))]));
  symlinkSync(join(elsewhere, 'target'), join(dir, segmentName(0)));
  await t.rejects(recover(dir, 'test', createWalMetrics(new Registry()), pino({ level: 'silent' })), { code: 'ELOOP' });
  t.ok(lstatSync(join(dir, segmentName(0))).isSymbolicLink(), 'the link left as it was');
});

t.test('a copy to corrupt/ that a crash cut short (its temp file left behind) is made again at the next start, which does not stop on it', async (t) => {
  const events = () => encodeEvents(1_800_000_000_123, [1, 8], Buffer.from('[{"a":1}]'));
  const segment = Buffer.concat([segmentHeader('0badcafe'), ...events(), ...events()]);
  const damaged = Buffer.from(segment);
  damaged[SEGMENT_HEADER_BYTES + 4]! ^= 0x40;
  const dir = mkdtempSync(join(tmpdir(), 'ingest-wal-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, segmentName(0)), damaged);
  writeFileSync(join(dir, segmentName(1)), segment);
  // What a kill between the temp file's writing and its rename leaves (writeAtomic's temp name).
  mkdirSync(join(dir, 'corrupt'));
  writeFileSync(join(dir, 'corrupt', `.tmp-${segmentName(0)}`), damaged.subarray(0, 20));
  const got = await recover(dir, 'test', createWalMetrics(new Registry()), pino({ level: 'silent' }));
  got.lock.release();
  t.equal(got.events, 3, 'the damaged record skipped, the three others replayed');
  t.same(readdirSync(join(dir, 'corrupt')), [segmentName(0)], 'the copy made, the leftover gone');
  t.same(readFileSync(join(dir, 'corrupt', segmentName(0))), damaged);
});
