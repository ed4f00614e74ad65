// Start-up: take a WAL directory, repair it (torn tail cut, corrupt records skipped), and rebuild what it holds
// that is not settled: batches cut before the crash (sent again under their recorded keys) and
// events after the last cut (batched afresh, ./rebuild.ts). Format and invariants: ./format.ts.
import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Entry, IdemKey } from '../channel.js';
import { type Disk, disk as realDisk } from '../disk/disk.js';
import { acquireLock, type DlqLock, DlqLocked } from '../dlq/lock.js';
import type { WalMetrics } from '../metrics/wal.js';
import type { Batch } from '../upload/batcher.js';
import { comparePositions, CUT, type CutRecord, decodeEvents, DONE, EVENTS, KEY, type Position, type RawRecord, SCAN_CHUNK_BYTES, scanSegment, segmentName, segmentSeq, type Skipped } from './format.js';
import type { SegmentState } from './log.js';
import { compareRecords, type CutAt, type Damage, type EventsAt, noCutAfter, rebuild } from './rebuild.js';

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
  /** Events of cut batches that a corrupt record cut short, missing from the WAL: logged, counted in wal_lost_events_total. */
  readonly lost: number;
  /** The Idempotency-Keys of the requests the log holds, settled or not, in log order, with when each was received. */
  readonly keys: KeyAt[];
}

/** A key record: an acknowledged request's Idempotency-Key. */
export interface KeyAt extends IdemKey {
  readonly at: number;
}

/**
 * Takes the directory's lock (throws WalLocked), repairs and reads it. Every read and repair goes
 * through `disk` (the real one unless a test plays a power cut); the lock does not: it is no durable
 * state (one a power loss leaves behind is stale after the reboot, by its boot id: src/disk/lock.ts).
 */
export async function recover(dir: string, instanceId: string, metrics: WalMetrics, log: Logger, disk: Disk = realDisk): Promise<Recovered> {
  await disk.fs.mkdir(dir, { recursive: true });
  let lock: DlqLock;
  try {
    lock = await acquireLock(dir, instanceId);
  } catch (err) {
    if (err instanceof DlqLocked) throw new WalLocked(err.message.replace('DLQ_DIR', 'WAL_DIR').replace('one process per DLQ directory', 'one process per WAL directory'));
    throw err;
  }
  try {
    return await read({ dir, disk }, lock, metrics, log);
  } catch (err) {
    lock.release();
    throw err;
  }
}

/**
 * Two passes, a segment at a time, streamed: the first checks every record, skips the corrupt ones,
 * cuts a torn tail and keeps only the cut and done records; the second copies out only the events records still
 * to send. Then rebuild() makes batches and entries of them.
 */
async function read(wal: WalDir, lock: DlqLock, metrics: WalMetrics, log: Logger): Promise<Recovered> {
  const seqs = await listSegments(wal);
  const chunk = Buffer.allocUnsafe(SCAN_CHUNK_BYTES);
  const { segments, cuts, done, keys, logId, damage, read: expected } = await checkSegments(wal, seqs, chunk, metrics, log);
  cuts.sort((a, b) => comparePositions(a.cut.from, b.cut.from));
  const events = await readUnsettled(wal, segments, expected, unsettledRanges(cuts, done, damage.length > 0), chunk);
  const { batches, cutSegs, entries, events: total, lost } = rebuild(segments, cuts, done, events, damage, log);
  metrics.lostEvents.inc(lost);
  const nextSeq = (seqs.at(-1) ?? -1) + 1;
  return { lock, logId: segments.length > 0 && logId !== undefined ? logId : randomBytes(4).toString('hex'), segments, nextSeq, batches, cutSegs, entries, events: total, lost, keys };
}

/** The WAL's directory, and the disk every read and repair in it goes through. */
interface WalDir {
  readonly dir: string;
  readonly disk: Disk;
}

/** The sequence numbers of the directory's segments, oldest first. */
async function listSegments({ dir, disk }: WalDir): Promise<number[]> {
  return (await disk.fs.readdir(dir)).map(segmentSeq).filter((s) => s !== undefined).sort((a, b) => a - b);
}

/** What the first pass found. */
interface Checked {
  /** The segments left after repairs, oldest first. */
  readonly segments: SegmentState[];
  readonly cuts: CutAt[];
  /** Ids of the batches with a done record. */
  readonly done: Set<string>;
  readonly keys: KeyAt[];
  /** The log's id, from the first segment left that has one. */
  readonly logId: string | undefined;
  /** The corrupt stretches skipped, in log order. */
  readonly damage: Damage[];
  /** What pass 2 must find again in each segment left: where its readable part ends, how many stretches it skips. */
  readonly read: Map<number, { good: number; skipped: number }>;
}

/** Pass 1: every record of every segment checked, each bad one skipped or cut, the cut and done records kept. */
async function checkSegments(wal: WalDir, seqs: readonly number[], chunk: Buffer, metrics: WalMetrics, log: Logger): Promise<Checked> {
  const { dir, disk } = wal;
  const segments: SegmentState[] = [];
  const cuts: CutAt[] = [];
  const done = new Set<string>();
  const keys: KeyAt[] = [];
  const damage: Damage[] = [];
  const read = new Map<number, { good: number; skipped: number }>();
  let logId: string | undefined;
  for (const [i, seq] of seqs.entries()) {
    const file = path.join(dir, segmentName(seq));
    const scanned = await scanSegment(file, (type) => type !== EVENTS, (record) => keepControl(record, seq, cuts, done, keys), chunk, disk);
    const torn = scanned.bad !== undefined && i === seqs.length - 1 && tornTail(await readFrom(disk, file, scanned.good), scanned.bad);
    // An unreadable end that is no torn tail is corruption like the rest, with no valid record after it.
    const skipped = scanned.bad === undefined || torn ? scanned.skipped : [...scanned.skipped, { off: scanned.good, bytes: scanned.size - scanned.good, events: true }];
    if (skipped.length > 0) await quarantine(wal, seq, skipped, metrics, log);
    if (torn) {
      // Written after the last fsync, so never acknowledged: cut.
      metrics.tornTails.inc();
      log.warn({ segment: segmentName(seq), at: scanned.good, bytes: scanned.size - scanned.good, why: scanned.bad }, 'WAL: torn tail cut (bytes written after the last fsync, never acknowledged)');
    }
    if (scanned.logId === undefined) {
      await disk.remove(dir, segmentName(seq)); // no segment header: nothing in it can be read
      continue;
    }
    if (torn) await truncate(disk, file, scanned.good);
    const size = torn ? scanned.good : scanned.size;
    logId ??= scanned.logId;
    segments.push({ seq, size, written: size, unsettled: 0, pendingCuts: 0 });
    damage.push(...skipped.map((s) => ({ seg: seq, ...s })));
    read.set(seq, { good: scanned.good, skipped: scanned.skipped.length });
  }
  return { segments, cuts, done, keys, logId, damage, read };
}

/** A cut, done or key record of segment `seq`, kept by pass 1. */
function keepControl(record: RawRecord, seq: number, cuts: CutAt[], done: Set<string>, keys: KeyAt[]): void {
  if (record.type === CUT) cuts.push({ cut: JSON.parse(record.payload.toString('utf8')) as CutRecord, seg: seq });
  else if (record.type === DONE) done.add((JSON.parse(record.payload.toString('utf8')) as { id: string }).id);
  else if (record.type === KEY) keys.push(JSON.parse(record.payload.toString('utf8')) as KeyAt);
}

/**
 * A segment with corrupt stretches: copied whole to corrupt/, each stretch counted and logged. The
 * segment itself is left as it is: its offsets name events in batch ids, and its valid records are
 * replayed from it.
 */
async function quarantine({ dir, disk }: WalDir, seq: number, skipped: readonly Skipped[], metrics: WalMetrics, log: Logger): Promise<void> {
  // The copy goes to WAL_DIR/corrupt only while that is a directory of its own, never through a
  // symlink (on a shared root, one could name another instance's directory); written whole and
  // durably. Else recovery stops here, the segment untouched, for an operator to fix.
  const file = path.join(dir, segmentName(seq));
  const corrupt = await disk.subdir(dir, CORRUPT_DIR);
  const { data } = await disk.readRegular(file);
  const temp = `.tmp-${segmentName(seq)}`;
  // A temp file a crash left in an earlier start's copy (this start, holding the lock, is the only
  // writer here) would stop every start on EEXIST: the copy is made again.
  await disk.fs.unlink(path.join(corrupt, temp)).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
  await disk.writeAtomic(corrupt, segmentName(seq), data, { temp });
  metrics.quarantinedSegments.inc();
  let bytes = 0;
  for (const { off, bytes: n } of skipped) {
    metrics.corruptRecords.inc();
    metrics.skippedBytes.inc(n);
    bytes += n;
    log.error({ segment: segmentName(seq), offset: off, bytes: n }, 'WAL: corrupt bytes skipped (a record whose checksum failed, up to the next valid record or the end of the segment)');
  }
  log.error({ segment: segmentName(seq), records: skipped.length, bytes }, 'WAL: corrupt segment copied to corrupt/; its valid records are replayed, its corrupt ones skipped');
}

/** Cuts `file` (never a symlink's target) to `size` bytes, durably. */
async function truncate(disk: Disk, file: string, size: number): Promise<void> {
  const handle = await disk.open(file, fsConstants.O_WRONLY);
  try {
    await handle.truncate(size);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Pass 2: the events records in `ranges` (see unsettledRanges), each copied out alone; a segment
 * holding none of them is not read again.
 */
async function readUnsettled({ dir, disk }: WalDir, segments: readonly SegmentState[], expected: Checked['read'], ranges: readonly [Position, Position][], chunk: Buffer): Promise<EventsAt[]> {
  const events: EventsAt[] = [];
  const cursor = new RangeCursor(ranges);
  for (const { seq } of segments) {
    if (!cursor.reaches(seq)) continue;
    const again = await scanSegment(
      path.join(dir, segmentName(seq)),
      (type, off) => type === EVENTS && cursor.covers(seq, off),
      (record) => events.push(eventsAt(seq, record)),
      chunk,
      disk,
    );
    const first = expected.get(seq)!;
    if (again.good !== first.good || again.skipped.length !== first.skipped) throw new Error(`WAL: ${segmentName(seq)} changed while it was replayed (${again.bad ?? 'its size'} at byte ${again.good})`);
  }
  return events;
}

function eventsAt(seg: number, record: RawRecord): EventsAt {
  const { receivedAt, spans, body } = decodeEvents(record.payload, false);
  const count = spans.length / 2;
  return { seg, off: record.off, count, entry: { receivedAt, body, spans, count, bytes: body.length, wal: { seg, off: record.off, base: 0 } } };
}

/** Walks sorted, disjoint [first, last] record ranges along the log, asked about records in log order. */
class RangeCursor {
  private r = 0;

  constructor(private readonly ranges: readonly [Position, Position][]) {}

  /** Whether a range holds records of segment `seq` (ranges ending before it are passed). */
  reaches(seq: number): boolean {
    const { ranges } = this;
    while (this.r < ranges.length && ranges[this.r]![1][0] < seq) this.r++;
    return this.r < ranges.length && ranges[this.r]![0][0] <= seq;
  }

  /** Whether the record (seg, off) is in a range (ranges ending before it are passed). */
  covers(seg: number, off: number): boolean {
    const { ranges } = this;
    while (this.r < ranges.length && compareRecords(ranges[this.r]![1], seg, off) < 0) this.r++;
    return this.r < ranges.length && compareRecords(ranges[this.r]![0], seg, off) <= 0;
  }
}


/**
 * The stretches of the log whose events records replay sends, as [first, last] records (both
 * included), sorted and disjoint: every cut batch with no done record, and everything from the
 * record where events in no cut may begin (noCutAfter); after damage (`damaged`), also every stretch between cuts, where
 * events may be whose cut record the damage took (without damage cuts leave no such stretch, and
 * reading the records at every cut's edges would cost up to a fraction of the log in memory).
 * `cuts` is sorted by where each starts.
 */
function unsettledRanges(cuts: readonly { cut: CutRecord }[], done: ReadonlySet<string>, damaged: boolean): [Position, Position][] {
  const everything: [Position, Position] = [[-1, 0, 0], [Number.MAX_SAFE_INTEGER, 0, 0]];
  // Partitioned cuts overlap: the events a lost one held may be anywhere (format.ts, "cut").
  if (damaged && cuts.some(({ cut }) => cut.part !== undefined)) return [everything];
  let lastEnd: Position = [-1, 0, 0];
  const ranges: [Position, Position][] = [];
  for (const { cut } of cuts) {
    if (damaged && comparePositions(cut.from, lastEnd) > 0) ranges.push([lastEnd, cut.from]);
    if (comparePositions(cut.to, lastEnd) > 0) lastEnd = cut.to;
    if (!done.has(cut.id)) ranges.push([cut.from, cut.to]);
  }
  ranges.push([noCutAfter(cuts) ?? everything[0], everything[1]]);
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

// At the end of the last segment, with no valid record after it, only what a write that never
// returned can leave is a torn tail: a record (or its header, or the segment's) cut short by the end
// of the file, or zeros to the end. A complete record whose checksum fails was written whole: damage
// to data that may have been fsynced, and acknowledged. `tail`: the segment from the bad record on.
function tornTail(tail: Buffer, bad: string): boolean {
  return bad !== 'a checksum mismatch' || tail.every((byte) => byte === 0);
}

/** A file's bytes from `offset` on (only the last segment's unreadable end is read, and that once). */
async function readFrom(disk: Disk, file: string, offset: number): Promise<Buffer> {
  const handle = await disk.open(file, fsConstants.O_RDONLY);
  try {
    const { size } = await handle.stat();
    const tail = Buffer.alloc(Math.max(0, size - offset));
    await handle.read(tail, 0, tail.length, offset);
    return tail;
  } finally {
    await handle.close();
  }
}
