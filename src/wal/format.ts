// The write-ahead log on disk (ACK_LEVEL=disk): segment files of checksummed records.
//
// WAL_DIR/
//   .lock                  the owner's lock (src/dlq/lock.ts): one process per directory
//   000000000007.wal       segments, numbered up from 0, never reused within a directory
//   corrupt/               copies of segments with a corrupt record (kept for a look)
//   keys/                  the key journal: Idempotency-Keys kept past their segments (./key-journal.ts)
//
// A segment is the 8 bytes `EIWAL01\n` and the log's id (8 hex digits: made when a directory has
// no segment, copied into every later one; it goes into batch ids), then records, each:
//
//   u32 LE  N        payload length
//   u32 LE  crc      CRC-32 of the type byte and the payload
//   u8      type     1 events, 2 cut, 3 done, 4 key
//   N bytes payload
//
// - events (one accepted request): f64 LE received_at (ms), u32 LE count, u32 LE spans[2 * count]
//   (event i is body[spans[2i], spans[2i+1])), then the body as the front kept it;
// - cut (a batch was cut; written and fsynced before its first PUT): JSON {id, key, events,
//   first, last, from, to}; from and to are positions [segment, offset, event], `to` exclusive:
//   the batch is every event from `from` up to `to` in log order (batches are contiguous). With an
//   `{event.FIELD}` in OBJECT_KEY, also `part: {field, value}` and `open`: the batch is every event
//   of that key-safe value from `from` up to `to` (batches are contiguous within one value), and
//   `open` is the position of the first event in no cut when it was cut (see "events in no cut").
//   Without `part`, also `prev`: [segment, offset, event, first] of the (up to PREV_CUTS) cuts this
//   process wrote just before it, oldest first (none in a process's first, nor in older WALs);
// - done (the batch is in S3, in the DLQ or counted dropped; not fsynced on its own): JSON {id}.
// - key (the Idempotency-Key of the events record just before it, written and fsynced with it, so
//   a key read means its events were read too; src/idempotency.ts): JSON {key, hash, bytes, at}.
//   Replay puts the keys still in the log back in the table; the key journal (./key-journal.ts)
//   holds each durably before its segment is removed, and keeps it for the window.
//
// Invariants:
// - a request is answered 202 only after its events record is fsynced (group commit: one
//   write, opened O_DSYNC, for every record queued since the last);
// - a position (segment, offset, event) never names two events in one directory, so a batch id
//   made from its first event's position is the same before and after a crash, and different
//   from every other batch's: a batch PUT again after a restart overwrites its own object;
// - a segment is deleted, oldest first and never the one being written, once every event in it is
//   settled (stored, spilled or dropped) and every batch whose cut it records too;
// - a record that is bad (its checksum fails, its length runs past the end) is skipped, and reading
//   goes on at the next valid record (a plausible header whose checksum matches): in the middle of
//   a segment and at its end alike, so that one damaged record costs that record only. Only a bad
//   record with no valid record after it, at the end of the last segment, that runs past the end of
//   the file or is followed by zeros only, is a torn tail (written, never fsynced, never
//   acknowledged) and is cut. Everything else skipped is corruption: the segment is copied to
//   corrupt/, each skipped stretch counted and logged, and the segment is left as it is (its
//   offsets name events in batch ids; a later start reads and counts it again until it is deleted).
// - events in no cut (to batch afresh at a restart) are all after the latest cut's `open` (without
//   one, its `to`): replay reads from there on, and from every cut not done;
// - what a lost record costs, by its type (src/wal/rebuild.ts does it):
//   * done: the batch looks unsettled and is PUT again under its recorded key: an overwrite with the
//     same events;
//   * cut: batches are contiguous in log order and a batch id is made from its first event's
//     position and received_at (DiskAcks.batchId), so a batch between two readable cuts is rebuilt
//     under the id and key it had (the naming read from a readable cut's id and key) once its start
//     is known: the previous cut's `to`, the id of a done record whose cut was lost, or an entry of
//     a later cut's `prev` (which holds its received_at too: exact even when the batch's first events
//     record was lost). The stretch between two readable cuts is split at every known start.
//     When the lost cut was the last, the events after the last readable cut are batched afresh:
//     the first batch starts at the same first event, so it gets the same id and key. A start is
//     unknown only when that batch's cut, the one before it and the next PREV_CUTS the same process
//     wrote (all it wrote after, when fewer) are lost, and no done record names it: then its events
//     go in the previous batch's object: S3 may hold them twice (at least once). A batch that began
//     in a deleted segment was settled: when a readable cut's `prev` names its start and the next
//     batch's, its events before that next start are left out (not sent under a new key). With
//     `part` cuts (partitioned batches are not contiguous) no cut is rebuilt: after damage replay
//     reads every events record left, and the events of a lost cut are batched afresh under new
//     keys (at least once);
//   * events: its events are lost (its bytes counted, its events too when a readable cut says how
//     many). The batch whose range covers it (its cut readable, or a stretch rebuilt as above with a
//     skipped stretch inside it that may have held events: see Skipped.events) is sent with the
//     events left, but only where its key holds no object (If-None-Match: *): a PUT of fewer events
//     must not replace the complete object a PUT before the crash may have stored. S3's 412 says
//     that object is there (then nothing is lost at all); an S3-compatible store that ignores
//     If-None-Match would overwrite it (docs/durability.md says which do not).
import { constants as fsConstants } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import zlib from 'node:zlib';
import { type Disk, disk as realDisk } from '../disk/disk.js';

export const MAGIC = Buffer.from('EIWAL01\n', 'latin1');
export const SEGMENT_HEADER_BYTES = MAGIC.length + 8;
export const RECORD_HEADER_BYTES = 9;
/** Larger than any record the server writes (a body is at most MAX_BODY_BYTES): a length past it is corruption. */
const MAX_RECORD_BYTES = 1024 * 1024 * 1024;

export const EVENTS = 1;
export const CUT = 2;
export const DONE = 3;
export const KEY = 4;

/** [segment, offset of the events record, event index in it]. */
export type Position = readonly [seg: number, off: number, ev: number];

export interface CutRecord {
  readonly id: string;
  readonly key: string;
  readonly events: number;
  readonly first: number;
  readonly last: number;
  readonly from: Position;
  readonly to: Position;
  /** A partitioned batch: only the events of this key-safe value of this top-level field. */
  readonly part?: { readonly field: string; readonly value: string };
  /** With `part`: the first event in no cut when this one was made; undefined: `to`. */
  readonly open?: Position;
  /**
   * Without `part`: the `from` and `first` of the cuts this log wrote just before it (at most
   * PREV_CUTS, oldest first, only those since the process started), so that a batch whose cut record
   * is lost still has its start, id and key named (./rebuild.ts), even when its first events record
   * is lost too. Absent in cuts written before it existed, and in a process's first.
   */
  readonly prev?: readonly PrevCut[];
}

/** Where an earlier batch starts, and its first event's received_at (which its id and key hold). */
export type PrevCut = readonly [seg: number, off: number, ev: number, first: number];

/** How many earlier batch starts a cut record names (`prev`): a few, to keep cut records small. */
export const PREV_CUTS = 4;

export function comparePositions(a: Position, b: Position): number {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
}

export function segmentName(seq: number): string {
  return `${String(seq).padStart(12, '0')}.wal`;
}

export function segmentSeq(name: string): number | undefined {
  return /^\d{12}\.wal$/.test(name) ? Number(name.slice(0, 12)) : undefined;
}

/** The buffers of one events record: a head (header, time, count, spans) and the body itself, not copied. */
export function encodeEvents(receivedAt: number, spans: readonly number[], body: Buffer): Buffer[] {
  const count = spans.length / 2;
  const head = Buffer.allocUnsafe(RECORD_HEADER_BYTES + 12 + 8 * count);
  head.writeUInt32LE(head.length - RECORD_HEADER_BYTES + body.length, 0);
  head[8] = EVENTS;
  head.writeDoubleLE(receivedAt, 9);
  head.writeUInt32LE(count, 17);
  for (let i = 0; i < spans.length; i++) head.writeUInt32LE(spans[i]!, 21 + 4 * i);
  head.writeUInt32LE(zlib.crc32(body, zlib.crc32(head.subarray(8))), 4);
  return [head, body];
}

export function encodeJson(type: typeof CUT | typeof DONE | typeof KEY, value: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(value), 'utf8');
  const record = Buffer.allocUnsafe(RECORD_HEADER_BYTES + json.length);
  record.writeUInt32LE(json.length, 0);
  record[8] = type;
  json.copy(record, RECORD_HEADER_BYTES);
  record.writeUInt32LE(zlib.crc32(record.subarray(8)), 4);
  return record;
}

export interface RawRecord {
  readonly type: number;
  readonly off: number;
  readonly payload: Buffer;
}

export function segmentHeader(logId: string): Buffer {
  return Buffer.concat([MAGIC, Buffer.from(logId, 'latin1')]);
}

/**
 * A stretch of a segment skipped as corrupt: a record whose checksum failed (or whose length runs
 * past the end) and whatever follows it up to the next valid record.
 */
export interface Skipped {
  readonly off: number;
  readonly bytes: number;
  /**
   * Whether it may have held events: false only when it reads as one cut, done or key record, its type
   * and its length agreeing with where the next valid record begins and its payload shaped as a
   * JSON object ({ to }). An events payload starts with its received_at, whose first byte is 0 for
   * any time in ms below 2^45 (the year 3084), so one whose type byte was damaged never passes.
   */
  readonly events: boolean;
}

const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;

/**
 * Whether the header at data[i] (9 bytes there at least) can start a record the writer wrote, looked
 * at before its checksum is taken, when reading goes looking for the next record after a bad one: a
 * known type, a length that fits in the `room` bytes left in the file, and, when data holds them,
 * a cut, done or key payload opening with '{' or an events payload long enough for its spans. JSON text
 * never holds the bytes 1 to 4 (control characters), so a client's body cannot pass for a header.
 */
function plausible(data: Buffer, i: number, room: number): boolean {
  const length = data.readUInt32LE(i);
  const type = data[i + 8]!;
  if (type < EVENTS || type > KEY || length > MAX_RECORD_BYTES || RECORD_HEADER_BYTES + length > room) return false;
  const p = i + RECORD_HEADER_BYTES;
  if (type !== EVENTS) return length >= 2 && (p >= data.length || data[p] === OPEN_BRACE);
  return length >= 12 && (p + 12 > data.length || 12 + 8 * data.readUInt32LE(p + 8) <= length);
}

/** See Skipped.events: `head` is the stretch's first bytes (10 when it has them), `last` its last byte. */
function mayHoldEvents(head: Buffer, last: number, bytes: number): boolean {
  if (head.length <= RECORD_HEADER_BYTES) return true;
  const type = head[8];
  return !((type === CUT || type === DONE || type === KEY) && RECORD_HEADER_BYTES + head.readUInt32LE(0) === bytes && head[RECORD_HEADER_BYTES] === OPEN_BRACE && last === CLOSE_BRACE);
}

/** Why the record at data[at] is bad, or undefined when it is whole and its checksum matches. */
function badRecord(data: Buffer, at: number): string | undefined {
  if (data.length - at < RECORD_HEADER_BYTES) return 'a record header cut short';
  const length = data.readUInt32LE(at);
  if (length > MAX_RECORD_BYTES || at + RECORD_HEADER_BYTES + length > data.length) return 'a record cut short';
  const typed = data.subarray(at + 8, at + RECORD_HEADER_BYTES + length);
  if (zlib.crc32(typed) !== data.readUInt32LE(at + 4) || typed[0]! < EVENTS || typed[0]! > KEY) return 'a checksum mismatch';
  return undefined;
}

/**
 * The records of a segment in memory, each bad record skipped up to the next valid one (as
 * scanSegment reads a file; the tests' reference for it, without its cap on the cost of a search);
 * `good` is where the readable part ends: the size, or a bad record with no valid one after it, and
 * `bad` says why.
 */
export function readRecords(data: Buffer): { logId: string | undefined; records: RawRecord[]; skipped: Skipped[]; good: number; bad: string | undefined } {
  const records: RawRecord[] = [];
  const skipped: Skipped[] = [];
  const logId = data.subarray(MAGIC.length, SEGMENT_HEADER_BYTES).toString('latin1');
  if (data.length < SEGMENT_HEADER_BYTES || !data.subarray(0, MAGIC.length).equals(MAGIC) || !/^[0-9a-f]{8}$/.test(logId)) {
    return { logId: undefined, records, skipped, good: 0, bad: data.length === 0 ? 'an empty file' : 'no segment header' };
  }
  let at = SEGMENT_HEADER_BYTES;
  while (at < data.length) {
    const bad = badRecord(data, at);
    if (bad === undefined) {
      const end = at + RECORD_HEADER_BYTES + data.readUInt32LE(at);
      records.push({ type: data[at + 8]!, off: at, payload: data.subarray(at + RECORD_HEADER_BYTES, end) });
      at = end;
      continue;
    }
    let next = at + 1;
    while (next + RECORD_HEADER_BYTES <= data.length && !(plausible(data, next, data.length - next) && badRecord(data, next) === undefined)) next++;
    if (next + RECORD_HEADER_BYTES > data.length) return { logId, records, skipped, good: at, bad };
    skipped.push({ off: at, bytes: next - at, events: mayHoldEvents(data.subarray(at, Math.min(next, at + RECORD_HEADER_BYTES + 1)), data[next - 1]!, next - at) });
    at = next;
  }
  return { logId, records, skipped, good: at, bad: undefined };
}

/**
 * An events record's payload as an entry's parts; the body is copied out of the segment's buffer,
 * unless `copy` is false (the payload is a buffer of its own, as scanSegment hands out).
 */
export function decodeEvents(payload: Buffer, copy = true): { receivedAt: number; spans: number[]; body: Buffer } {
  const receivedAt = payload.readDoubleLE(0);
  const count = payload.readUInt32LE(8);
  const spans = new Array<number>(2 * count);
  for (let i = 0; i < 2 * count; i++) spans[i] = payload.readUInt32LE(12 + 4 * i);
  const body = payload.subarray(12 + 8 * count);
  return { receivedAt, spans, body: copy ? Buffer.from(body) : body };
}

/** How much of a segment file scanSegment reads at a time. */
export const SCAN_CHUNK_BYTES = 1024 * 1024;

/** What scanSegment found: readRecords's answer without the records, and the file's size. */
export interface Scanned {
  readonly logId: string | undefined;
  readonly skipped: readonly Skipped[];
  readonly good: number;
  readonly bad: string | undefined;
  readonly size: number;
}

/**
 * The most a search for the next valid record may checksum in one segment, as a multiple of its
 * size: the cap on its cost (see resync).
 */
const RESYNC_BUDGET_FACTOR = 8;

/**
 * readRecords on a file, streamed: every record is checked as readRecords checks it (its checksum
 * taken piece by piece), but a payload is kept only when `want(type, off)` says so: copied into a
 * buffer of its own and handed to `visit` once its checksum passed. Holds one chunk of the file
 * (`chunk`: pass the same one to every call, so that no segment leaves one for the garbage
 * collector) and the payload being kept, whatever the size of the segment. Every read goes through
 * `disk` (never through a symlink), a chunk at a time.
 */
export async function scanSegment(file: string, want: (type: number, off: number) => boolean, visit: (record: RawRecord) => void, chunk: Buffer = Buffer.allocUnsafe(SCAN_CHUNK_BYTES), disk: Disk = realDisk): Promise<Scanned> {
  if (chunk.length < SEGMENT_HEADER_BYTES) throw new RangeError(`scanSegment: a chunk of ${chunk.length} bytes is less than a segment header`);
  const handle = await disk.open(file, fsConstants.O_RDONLY);
  try {
    const size = (await handle.stat()).size;
    const skipped: Skipped[] = [];
    if (size < SEGMENT_HEADER_BYTES) return { logId: undefined, skipped, good: 0, bad: size === 0 ? 'an empty file' : 'no segment header', size };
    const data = new ChunkedFile(handle, file, size, chunk);
    const logId = await readLogId(data);
    if (logId === undefined) return { logId, skipped, good: 0, bad: 'no segment header', size };
    const budget = { bytes: RESYNC_BUDGET_FACTOR * size };
    let at = SEGMENT_HEADER_BYTES;
    while (at < size) {
      const next = await readRecordAt(data, at, want, visit);
      if (typeof next === 'number') {
        at = next;
        continue;
      }
      const found = await resync(data, at + 1, budget);
      if (found === undefined) return { logId, skipped, good: at, bad: next, size };
      const head = Buffer.from(await data.view(at, Math.min(found - at, RECORD_HEADER_BYTES + 1)));
      const last = (await data.view(found - 1, 1))[0]!;
      skipped.push({ off: at, bytes: found - at, events: mayHoldEvents(head, last, found - at) });
      at = found;
    }
    return { logId, skipped, good: at, bad: undefined, size };
  } finally {
    await handle.close();
  }
}

/** A segment's log id, or undefined when its header is not one. */
async function readLogId(data: ChunkedFile): Promise<string | undefined> {
  const header = await data.view(0, SEGMENT_HEADER_BYTES);
  const logId = header.subarray(MAGIC.length).toString('latin1');
  return header.subarray(0, MAGIC.length).equals(MAGIC) && /^[0-9a-f]{8}$/.test(logId) ? logId : undefined;
}

/**
 * The record at `at`, checked (and handed to `visit` when `want` asks for it); returns the offset
 * after it, or why it is bad: the reader decides what a bad record means.
 */
async function readRecordAt(data: ChunkedFile, at: number, want: (type: number, off: number) => boolean, visit: (record: RawRecord) => void): Promise<number | string> {
  if (data.size - at < RECORD_HEADER_BYTES) return 'a record header cut short';
  const head = await data.view(at, RECORD_HEADER_BYTES);
  const length = head.readUInt32LE(0);
  const crc = head.readUInt32LE(4);
  const type = head[8]!;
  if (length > MAX_RECORD_BYTES || at + RECORD_HEADER_BYTES + length > data.size) return 'a record cut short';
  // The type byte's checksum is taken now: `head` is a view that the payload's reads replace.
  const typeSum = zlib.crc32(head.subarray(8, RECORD_HEADER_BYTES));
  const known = type >= EVENTS && type <= KEY;
  const payload = known && want(type, at) ? Buffer.allocUnsafe(length) : undefined;
  const sum = await checksumPayload(data, at + RECORD_HEADER_BYTES, length, typeSum, payload);
  if (sum !== crc || !known) return 'a checksum mismatch';
  if (payload !== undefined) visit({ type, off: at, payload });
  return at + RECORD_HEADER_BYTES + length;
}

/**
 * Where the first valid record at or after `from` begins (a plausible header whose checksum
 * matches), or undefined when there is none, or when the segment's `budget` is spent. Each offset is
 * looked at in the chunk in memory, without waiting; only a plausible header has its payload read
 * and checksummed. On what the server writes that is rare (bodies are JSON text, which never holds
 * a type byte) and cheap (the lengths that pass are those of real records or small numbers). The
 * worst case is a crafted segment with a plausible header at every offset, each claiming the rest
 * of the file: its size squared over 2 bytes checksummed; the budget caps that at
 * RESYNC_BUDGET_FACTOR times the size per segment (128 MiB for a 16 MiB segment, a fraction of a
 * second), past which the rest of the segment counts as unreadable.
 */
async function resync(data: ChunkedFile, from: number, budget: { bytes: number }): Promise<number | undefined> {
  let p = from;
  while (p + RECORD_HEADER_BYTES <= data.size) {
    const view = await data.view(p, Math.min(data.chunkBytes, data.size - p));
    let i = 0;
    while (i + RECORD_HEADER_BYTES <= view.length && !plausible(view, i, data.size - p - i)) i++;
    if (i + RECORD_HEADER_BYTES > view.length) {
      p += i; // the next offsets' headers run past this view: looked at in the next
      continue;
    }
    const length = view.readUInt32LE(i);
    if (length > budget.bytes) return undefined;
    budget.bytes -= length;
    const at = p + i;
    if (typeof (await readRecordAt(data, at, never, () => {})) === 'number') return at;
    p = at + 1;
  }
  return undefined;
}

const never = (): boolean => false;

/** The CRC-32 of `length` bytes of the file from `from` on, continuing `sum`; they are copied into `payload` if given. */
async function checksumPayload(data: ChunkedFile, from: number, length: number, sum: number, payload: Buffer | undefined): Promise<number> {
  for (let p = from, stop = from + length; p < stop; ) {
    const piece = await data.view(p, Math.min(data.chunkBytes, stop - p));
    sum = zlib.crc32(piece, sum);
    if (payload !== undefined) piece.copy(payload, p - from);
    p += piece.length;
  }
  return sum;
}

/** A file read through one buffer: views of its bytes, each valid until the next call. */
class ChunkedFile {
  private readonly buf: Buffer;
  /** The file bytes [start, end) are in buf. */
  private start = 0;
  private end = 0;

  constructor(
    private readonly handle: FileHandle,
    private readonly file: string,
    readonly size: number,
    chunk: Buffer,
  ) {
    this.buf = chunk.subarray(0, Math.min(chunk.length, size));
  }

  /** The most a view can hold. */
  get chunkBytes(): number {
    return this.buf.length;
  }

  /** File bytes [pos, pos + n), n <= chunkBytes. */
  async view(pos: number, n: number): Promise<Buffer> {
    if (pos < this.start || pos + n > this.end) await this.fill(pos, n);
    return this.buf.subarray(pos - this.start, pos - this.start + n);
  }

  private async fill(pos: number, n: number): Promise<void> {
    this.start = this.end = pos;
    const len = Math.min(this.buf.length, this.size - pos);
    while (this.end - this.start < len) {
      const { bytesRead } = await this.handle.read(this.buf, this.end - this.start, len - (this.end - this.start), this.end);
      if (bytesRead === 0) break;
      this.end += bytesRead;
    }
    if (pos + n > this.end) throw new Error(`${this.file} shrank while it was read`);
  }
}
