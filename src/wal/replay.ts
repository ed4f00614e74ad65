// Start-up: take a WAL directory, repair it (torn tail, corrupt segments), and rebuild what it holds
// that is not settled: batches cut before the crash (sent again under their recorded keys) and
// events after the last cut (batched afresh). Format and invariants: ./format.ts.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Entry } from '../channel.js';
import { acquireLock, type DlqLock, DlqLocked } from '../dlq/lock.js';
import type { WalMetrics } from '../metrics/wal.js';
import { type Batch, LINE_OVERHEAD_BYTES, type Segment } from '../upload/batcher.js';
import { comparePositions, CUT, type CutRecord, decodeEvents, DONE, EVENTS, type Position, RECORD_HEADER_BYTES, SCAN_CHUNK_BYTES, scanSegment, SEGMENT_HEADER_BYTES, segmentName, segmentSeq } from './format.js';
import type { SegmentState } from './log.js';

export const CORRUPT_DIR = 'corrupt';

export class WalLocked extends Error {
  override name = 'WalLocked';
}

/** What a WAL directory holds that is not settled, and the state to go on writing it with. */
export interface Recovered {
  readonly lock: DlqLock;
  readonly logId: string;
  readonly segments: SegmentState[];
  readonly nextSeq: number;
  /** Cut before the crash and not known settled: to PUT again, under their keys. */
  readonly batches: Batch[];
  /** Which segment holds each batch's cut record. */
  readonly cutSegs: Map<string, number>;
  /** Events after the last cut, in log order. */
  readonly entries: Entry[];
  /** Events in `batches` and `entries`. */
  readonly events: number;
  /** Events of cut batches that a corrupt segment cut short: not sent, logged, counted in wal_lost_events_total. */
  readonly lost: number;
}

interface EventsAt {
  readonly seg: number;
  readonly off: number;
  readonly count: number;
  readonly entry: Entry;
}

/** Takes the directory's lock (throws WalLocked), repairs and reads it. */
export async function recover(dir: string, instanceId: string, metrics: WalMetrics, log: Logger): Promise<Recovered> {
  await fs.mkdir(dir, { recursive: true });
  let lock: DlqLock;
  try {
    lock = await acquireLock(dir, instanceId);
  } catch (err) {
    if (err instanceof DlqLocked) throw new WalLocked(err.message.replace('DLQ_DIR', 'WAL_DIR').replace('one process per DLQ directory', 'one process per WAL directory'));
    throw err;
  }
  try {
    return await read(dir, lock, metrics, log);
  } catch (err) {
    lock.release();
    throw err;
  }
}

async function read(dir: string, lock: DlqLock, metrics: WalMetrics, log: Logger): Promise<Recovered> {
  const seqs = (await fs.readdir(dir)).map(segmentSeq).filter((s) => s !== undefined).sort((a, b) => a - b);
  const segments: SegmentState[] = [];
  const events: EventsAt[] = [];
  const cuts: { cut: CutRecord; seg: number }[] = [];
  const done = new Set<string>();
  let logId: string | undefined;
  let damaged = false;
  // Pass 1, a segment at a time, streamed: every record checked, only cut and done records kept.
  const chunk = Buffer.allocUnsafe(SCAN_CHUNK_BYTES);
  for (const [i, seq] of seqs.entries()) {
    const file = path.join(dir, segmentName(seq));
    const read = await scanSegment(
      file,
      (type) => type !== EVENTS,
      (record) => {
        if (record.type === CUT) cuts.push({ cut: JSON.parse(record.payload.toString('utf8')) as CutRecord, seg: seq });
        else if (record.type === DONE) done.add((JSON.parse(record.payload.toString('utf8')) as { id: string }).id);
      },
      chunk,
    );
    if (read.bad !== undefined) {
      if (i === seqs.length - 1 && tornTail(await readFrom(file, read.good), read.bad)) {
        // Written after the last fsync, so never acknowledged: cut.
        metrics.tornTails.inc();
        log.warn({ segment: segmentName(seq), at: read.good, bytes: read.size - read.good, why: read.bad }, `WAL: torn tail cut from ${segmentName(seq)} (${read.size - read.good} bytes never fsynced)`);
      } else {
        await fs.mkdir(path.join(dir, CORRUPT_DIR), { recursive: true });
        await fs.copyFile(file, path.join(dir, CORRUPT_DIR, segmentName(seq)));
        metrics.quarantinedSegments.inc();
        damaged = true;
        log.error({ segment: segmentName(seq), at: read.good, bytes: read.size - read.good, why: read.bad }, `WAL: corrupt segment ${segmentName(seq)} (${read.bad} at byte ${read.good}): copied to ${CORRUPT_DIR}/, cut there; the events after that point are lost`);
      }
      if (read.good < SEGMENT_HEADER_BYTES) {
        await fs.rm(file, { force: true });
        continue;
      }
      await fs.truncate(file, read.good);
    }
    logId ??= read.logId;
    segments.push({ seq, size: read.good, written: read.good, unsettled: 0, pendingCuts: 0 });
  }
  const bySeq = new Map(segments.map((s) => [s.seq, s]));
  const firstPresent = segments[0]?.seq ?? Number.POSITIVE_INFINITY;
  cuts.sort((a, b) => comparePositions(a.cut.from, b.cut.from));

  // Pass 2, a segment at a time again: only the events records still to send (those of a cut
  // batch with no done record, those no cut covers, and those from the end of the last cut on),
  // each copied out alone; a segment holding none of them is not read again.
  const ranges = unsettledRanges(cuts, done, damaged);
  let r = 0;
  const wanted = (seg: number, off: number): boolean => {
    while (r < ranges.length && compareRecords(ranges[r]![1], seg, off) < 0) r++;
    return r < ranges.length && compareRecords(ranges[r]![0], seg, off) <= 0;
  };
  for (const { seq } of segments) {
    while (r < ranges.length && ranges[r]![1][0] < seq) r++;
    if (r === ranges.length || ranges[r]![0][0] > seq) continue;
    const again = await scanSegment(
      path.join(dir, segmentName(seq)),
      (type, off) => type === EVENTS && wanted(seq, off),
      (record) => {
        const { receivedAt, spans, body } = decodeEvents(record.payload, false);
        const count = spans.length / 2;
        events.push({ seg: seq, off: record.off, count, entry: { receivedAt, body, spans, count, bytes: body.length, wal: { seg: seq, off: record.off, base: 0 } } });
      },
      chunk,
    );
    if (again.bad !== undefined || again.good !== bySeq.get(seq)!.size) throw new Error(`WAL: ${segmentName(seq)} changed while it was replayed (${again.bad ?? 'its size'} at byte ${again.good})`);
  }

  const batches: Batch[] = [];
  const cutSegs = new Map<string, number>();
  let lost = 0;
  let total = 0;
  let i = 0;
  // What each events record has in some cut (settled or not), as [from, to) event ranges.
  const inCuts = new Map<EventsAt, [number, number][]>();
  const before = (e: EventsAt, p: Position) => e.seg < p[0] || (e.seg === p[0] && e.off < p[1]);
  for (const { cut, seg: cutSeg } of cuts) {
    while (i < events.length && before(events[i]!, cut.from)) i++;
    const pieces: Segment[] = [];
    let found = 0;
    let bytes = 0;
    for (let j = i; j < events.length && (before(events[j]!, cut.to) || (events[j]!.seg === cut.to[0] && events[j]!.off === cut.to[1])); j++) {
      const at = events[j]!;
      const from = at.seg === cut.from[0] && at.off === cut.from[1] ? cut.from[2] : 0;
      const to = at.seg === cut.to[0] && at.off === cut.to[1] ? cut.to[2] : at.count;
      if (to <= from) continue;
      inCuts.set(at, [...(inCuts.get(at) ?? []), [from, to]]);
      pieces.push({ entry: at.entry, from, to });
      found += to - from;
      for (let k = from; k < to; k++) bytes += LINE_OVERHEAD_BYTES + at.entry.spans[2 * k + 1]! - at.entry.spans[2 * k]!;
    }
    if (done.has(cut.id)) continue;
    if (found !== cut.events) {
      // Its first segment is gone: every event in it, hence the batch, was settled. Otherwise a
      // corrupt segment took part of it: PUT less under its key could replace a complete object.
      if (cut.from[0] >= firstPresent) {
        lost += cut.events;
        log.error({ id: cut.id, key: cut.key, events: cut.events, found }, `WAL: batch ${cut.id} is incomplete after a corrupt segment; not sent again (its key may hold it already)`);
      }
      continue;
    }
    batches.push({ id: cut.id, key: cut.key, events: found, bytes, firstReceivedAt: cut.first, lastReceivedAt: cut.last, segments: pieces });
    cutSegs.set(cut.id, cutSeg);
    bySeq.get(cutSeg)!.pendingCuts++;
    for (const p of pieces) bySeq.get(p.entry.wal!.seg)!.unsettled += p.to - p.from;
    total += found;
  }

  // Events in no cut, batched afresh: those after the end of the last cut (never in a batch that
  // could have reached S3), and those before it whose cut record a damaged segment lost (their
  // batch may have been PUT already: sent again under a new key, at least once).
  const lastEnd = cuts.reduce<Position | undefined>((end, { cut }) => (end === undefined || comparePositions(cut.to, end) > 0 ? cut.to : end), undefined);
  const entries: Entry[] = [];
  let rebatched = 0;
  const batchAfresh = (at: EventsAt, from: number, to: number) => {
    const e = at.entry;
    entries.push(from === 0 && to === at.count ? e : { receivedAt: e.receivedAt, body: e.body, spans: e.spans.slice(2 * from, 2 * to), count: to - from, bytes: e.bytes, wal: { seg: at.seg, off: at.off, base: from } });
    bySeq.get(at.seg)!.unsettled += to - from;
    total += to - from;
    if (lastEnd === undefined) return;
    if (before(at, lastEnd)) rebatched += to - from;
    else if (at.seg === lastEnd[0] && at.off === lastEnd[1]) rebatched += Math.max(0, Math.min(to, lastEnd[2]) - from);
  };
  for (const at of events) {
    let from = 0;
    const ranges: [number, number][] = [...(inCuts.get(at) ?? []), [at.count, at.count]];
    for (const [cutFrom, cutTo] of ranges.sort((x, y) => x[0] - y[0])) {
      if (cutFrom > from) batchAfresh(at, from, cutFrom);
      from = Math.max(from, cutTo);
    }
  }
  if (rebatched > 0) log.error({ rebatched }, `WAL: ${rebatched} events before a damaged record lost their cut record to it; batched again under new keys (S3 may hold them twice)`);
  metrics.lostEvents.inc(lost);
  const nextSeq = (seqs.at(-1) ?? -1) + 1;
  return { lock, logId: segments.length > 0 && logId !== undefined ? logId : randomBytes(4).toString('hex'), segments, nextSeq, batches, cutSegs, entries, events: total, lost };
}

/** Where an events record (seg, off) is against a position: its event index is left out. */
function compareRecords(p: Position, seg: number, off: number): number {
  return p[0] - seg || p[1] - off;
}

/**
 * The stretches of the log whose events records replay sends, as [first, last] records (both
 * included), sorted and disjoint: every cut batch with no done record, and everything from the
 * record where the last cut ends; after damage (`damaged`), also every stretch between cuts, where
 * events may be whose cut record the damage took (without damage cuts leave no such stretch, and
 * reading the records at every cut's edges would cost up to a fraction of the log in memory).
 * `cuts` is sorted by where each starts.
 */
function unsettledRanges(cuts: readonly { cut: CutRecord }[], done: ReadonlySet<string>, damaged: boolean): [Position, Position][] {
  let lastEnd: Position = [-1, 0, 0];
  const ranges: [Position, Position][] = [];
  for (const { cut } of cuts) {
    if (damaged && comparePositions(cut.from, lastEnd) > 0) ranges.push([lastEnd, cut.from]);
    if (comparePositions(cut.to, lastEnd) > 0) lastEnd = cut.to;
    if (!done.has(cut.id)) ranges.push([cut.from, cut.to]);
  }
  ranges.push([lastEnd, [Number.MAX_SAFE_INTEGER, 0, 0]]);
  ranges.sort((a, b) => compareRecords(a[0], b[0][0], b[0][1]));
  const merged: [Position, Position][] = [];
  for (const range of ranges) {
    const last = merged.at(-1);
    if (last !== undefined && compareRecords(range[0], last[1][0], last[1][1]) <= 0) {
      if (compareRecords(range[1], last[1][0], last[1][1]) > 0) last[1] = range[1];
    } else merged.push([range[0], range[1]]);
  }
  return merged;
}

// In the last segment, only what a write that never returned can leave is a torn tail: a record
// cut short by the end of the file, a last record whose checksum fails, or zeros to the end.
// A failed checksum with more after it is damage to data already fsynced, and acknowledged.
// `tail`: the segment from the first bad record on.
function tornTail(tail: Buffer, bad: string): boolean {
  if (bad !== 'a checksum mismatch') return true;
  const end = RECORD_HEADER_BYTES + tail.readUInt32LE(0);
  return end === tail.length || tail.every((byte) => byte === 0);
}

/** A file's bytes from `offset` on (at most one segment: only the last segment's bad end is read). */
async function readFrom(file: string, offset: number): Promise<Buffer> {
  const handle = await fs.open(file, 'r');
  try {
    const { size } = await handle.stat();
    const tail = Buffer.alloc(Math.max(0, size - offset));
    await handle.read(tail, 0, tail.length, offset);
    return tail;
  } finally {
    await handle.close();
  }
}
