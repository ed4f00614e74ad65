// The write-ahead log on disk (ACK_LEVEL=disk): segment files of checksummed records.
//
// WAL_DIR/
//   .lock                  the owner's lock (src/dlq/lock.ts): one process per directory
//   000000000007.wal       segments, numbered up from 0, never reused within a directory
//   corrupt/               copies of segments whose middle failed its checksum (kept for a look)
//
// A segment is the 8 bytes `EIWAL01\n` and the log's id (8 hex digits: made when a directory has
// no segment, copied into every later one; it goes into batch ids), then records, each:
//
//   u32 LE  N        payload length
//   u32 LE  crc      CRC-32 of the type byte and the payload
//   u8      type     1 events, 2 cut, 3 done
//   N bytes payload
//
// - events (one accepted request): f64 LE received_at (ms), u32 LE count, u32 LE spans[2 * count]
//   (event i is body[spans[2i], spans[2i+1])), then the body as the front kept it;
// - cut (a batch was cut; written and fsynced before its first PUT): JSON {id, key, events,
//   first, last, from, to}; from and to are positions [segment, offset, event], `to` exclusive:
//   the batch is every event from `from` up to `to` in log order (batches are contiguous);
// - done (the batch is in S3, in the DLQ or counted dropped; not fsynced on its own): JSON {id}.
//
// Invariants:
// - a request is answered 202 only after its events record is fsynced (group commit: one
//   write, opened O_DSYNC, for every record queued since the last);
// - a position (segment, offset, event) never names two events in one directory, so a batch id
//   made from its first event's position is the same before and after a crash, and different
//   from every other batch's: a batch PUT again after a restart overwrites its own object;
// - a segment is deleted, oldest first and never the one being written, once every event in it is
//   settled (stored, spilled or dropped) and every batch whose cut it records too;
// - reading stops at the first record whose length runs past the end or whose checksum fails. At
//   the end of the last segment (a length past the end of the file, a checksum failure of its
//   final record, or zeros to the end) that is a torn tail (written, never fsynced, never
//   acknowledged) and is cut; anywhere else, a failed checksum with more after it included, it is
//   corruption: the segment is copied to corrupt/, counted, and cut there too, so that what
//   precedes it is still replayed (events before the damage whose cut record it took are
//   batched again, under new keys).
import fs from 'node:fs/promises';
import zlib from 'node:zlib';

export const MAGIC = Buffer.from('EIWAL01\n', 'latin1');
export const SEGMENT_HEADER_BYTES = MAGIC.length + 8;
export const RECORD_HEADER_BYTES = 9;
/** Larger than any record the server writes (a body is at most MAX_BODY_BYTES): a length past it is corruption. */
const MAX_RECORD_BYTES = 1024 * 1024 * 1024;

export const EVENTS = 1;
export const CUT = 2;
export const DONE = 3;

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
}

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

export function encodeJson(type: typeof CUT | typeof DONE, value: unknown): Buffer {
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

/** The records of a segment up to the first bad one; `good` is where that one starts (or the size). */
export function readRecords(data: Buffer): { logId: string | undefined; records: RawRecord[]; good: number; bad: string | undefined } {
  const records: RawRecord[] = [];
  const logId = data.subarray(MAGIC.length, SEGMENT_HEADER_BYTES).toString('latin1');
  if (data.length < SEGMENT_HEADER_BYTES || !data.subarray(0, MAGIC.length).equals(MAGIC) || !/^[0-9a-f]{8}$/.test(logId)) {
    return { logId: undefined, records, good: 0, bad: data.length === 0 ? 'an empty file' : 'no segment header' };
  }
  let at = SEGMENT_HEADER_BYTES;
  while (at < data.length) {
    if (data.length - at < RECORD_HEADER_BYTES) return { logId, records, good: at, bad: 'a record header cut short' };
    const length = data.readUInt32LE(at);
    if (length > MAX_RECORD_BYTES || at + RECORD_HEADER_BYTES + length > data.length) return { logId, records, good: at, bad: 'a record cut short' };
    const typed = data.subarray(at + 8, at + RECORD_HEADER_BYTES + length);
    const type = typed[0]!;
    if (zlib.crc32(typed) !== data.readUInt32LE(at + 4) || type < EVENTS || type > DONE) return { logId, records, good: at, bad: 'a checksum mismatch' };
    records.push({ type, off: at, payload: typed.subarray(1) });
    at += RECORD_HEADER_BYTES + length;
  }
  return { logId, records, good: at, bad: undefined };
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
  readonly good: number;
  readonly bad: string | undefined;
  readonly size: number;
}

/**
 * readRecords on a file, streamed: every record is checked as readRecords checks it (its checksum
 * taken piece by piece), but a payload is kept only when `want(type, off)` says so: copied into a
 * buffer of its own and handed to `visit` once its checksum passed. Holds one chunk of the file
 * (`chunk`: pass the same one to every call, so that no segment leaves one for the garbage
 * collector) and the payload being kept, whatever the size of the segment.
 */
export async function scanSegment(file: string, want: (type: number, off: number) => boolean, visit: (record: RawRecord) => void, chunk: Buffer = Buffer.allocUnsafe(SCAN_CHUNK_BYTES)): Promise<Scanned> {
  if (chunk.length < SEGMENT_HEADER_BYTES) throw new RangeError(`scanSegment: a chunk of ${chunk.length} bytes is less than a segment header`);
  const handle = await fs.open(file, 'r');
  try {
    const size = (await handle.stat()).size;
    if (size < SEGMENT_HEADER_BYTES) return { logId: undefined, good: 0, bad: size === 0 ? 'an empty file' : 'no segment header', size };
    const data = new ChunkedFile(handle, file, size, chunk);
    const logId = await readLogId(data);
    if (logId === undefined) return { logId, good: 0, bad: 'no segment header', size };
    let at = SEGMENT_HEADER_BYTES;
    while (at < size) {
      const next = await readRecordAt(data, at, want, visit);
      if (typeof next === 'string') return { logId, good: at, bad: next, size };
      at = next;
    }
    return { logId, good: at, bad: undefined, size };
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
  const known = type >= EVENTS && type <= DONE;
  const payload = known && want(type, at) ? Buffer.allocUnsafe(length) : undefined;
  const sum = await checksumPayload(data, at + RECORD_HEADER_BYTES, length, typeSum, payload);
  if (sum !== crc || !known) return 'a checksum mismatch';
  if (payload !== undefined) visit({ type, off: at, payload });
  return at + RECORD_HEADER_BYTES + length;
}

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
    private readonly handle: fs.FileHandle,
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
