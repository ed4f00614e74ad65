// One DLQ file: the batch's object, with what its re-upload needs in a header any reader of the
// codec skips. The codec is the one the key's extension names (src/upload/codec.ts):
// - gzip (`<id>.jsonl.gz`): the gzip object itself, its header given the metadata (below);
// - none (`<id>.jsonl.gz`): the JSON lines gzipped for the disk, in the same format; the object
//   is what that inflates to;
// - zstd (`<id>.jsonl.zst`): a zstd skippable frame (magic 0x184D2A5E, u32 LE length) holding
//   the metadata JSON, then the zstd object as PUT: `zstdcat <file>` prints the lines.
//
// gzip format: a standard single-member gzip file (RFC 1952) whose header carries the FEXTRA flag
// and one extra subfield, id "EI", holding UTF-8 JSON:
//   {"v":1,"key":...,"events":N,"firstReceivedAt":ms,"lastReceivedAt":ms,"spilledAt":ms,"crc32":C}
// and `"ifAbsent":true` for a batch that must never replace an object at its key (a WAL batch
// replayed short after corruption: src/upload/batcher.ts, Batch.ifAbsent).
// `crc32` is of the object exactly as first PUT (for gzip, the file without the extra field), so
// re-uploads send the same bytes and S3 can verify them. Any gzip tool reads a `.jsonl.gz` file as
// is: `zcat <file>` prints the batch's JSON lines.
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { type Codec, codecOfKey } from '../upload/codec.js';

export interface DlqMeta {
  readonly v: 1;
  readonly key: string;
  readonly events: number;
  readonly firstReceivedAt: number;
  readonly lastReceivedAt: number;
  readonly spilledAt: number;
  readonly crc32: number;
  /** Re-uploaded only where no object is at the key (If-None-Match: *); a 412 means it is there. */
  readonly ifAbsent?: true;
}

export class CorruptFile extends Error {}

const GZIP_HEADER_BYTES = 10;
const FLAGS = 3;
const FEXTRA = 0x04;
const SUBFIELD_ID = Buffer.from('EI');
/** The last of zstd's 16 skippable frame magics (RFC 8878, 3.1.2), little-endian. */
const ZSTD_SKIPPABLE = 0x184d2a5e;
const ZSTD_HEADER_BYTES = 8;
const gzip = promisify(zlib.gzip);
const gunzip = promisify(zlib.gunzip);

/** The name of a batch's DLQ file: a zstd file for a zstd object, else a gzip file. */
export function fileName(id: string, key: string): string {
  return `${id}${codecOfKey(key) === 'zstd' ? '.jsonl.zst' : '.jsonl.gz'}`;
}

/** Whether a name is one fileName makes (by its suffix). */
export function isQueuedName(name: string): boolean {
  return name.endsWith('.jsonl.gz') || name.endsWith('.jsonl.zst');
}

/** The batch id in a DLQ file's name, or undefined when the name is not one fileName makes. */
export function idOfName(name: string): string | undefined {
  const suffix = ['.jsonl.gz', '.jsonl.zst'].find((s) => name.endsWith(s));
  return suffix === undefined ? undefined : name.slice(0, -suffix.length);
}

/** The DLQ file for an object as the upload loop made it for `meta.key`'s codec. */
export async function spillFile(object: Buffer, meta: Omit<DlqMeta, 'v' | 'crc32'>): Promise<Buffer> {
  const codec = codecOfKey(meta.key);
  if (codec === 'gzip') return encodeFile(object, meta);
  if (codec === 'none') return encodeFile(await gzip(object, { level: 1 }), meta, zlib.crc32(object));
  const json = Buffer.from(JSON.stringify({ v: 1, ...meta, crc32: zlib.crc32(object) }));
  const header = Buffer.alloc(ZSTD_HEADER_BYTES);
  header.writeUInt32LE(ZSTD_SKIPPABLE, 0);
  header.writeUInt32LE(json.length, 4);
  return Buffer.concat([header, json, object]);
}

/** How many bytes of a file's start decodeMeta needs, from its first 12 (fewer: the file is that short). */
export function headerBytes(fixed: Buffer): number {
  if (fixed.length < 12) return fixed.length;
  return fixed.readUInt32LE(0) === ZSTD_SKIPPABLE ? ZSTD_HEADER_BYTES + fixed.readUInt32LE(4) : 12 + fixed.readUInt16LE(10);
}

/** The DLQ file for a gzip member as zlib made it (a bare 10-byte header, no flags); `crc32`: of the object, when that is not the member. */
export function encodeFile(gzip: Buffer, meta: Omit<DlqMeta, 'v' | 'crc32'>, crc32 = zlib.crc32(gzip)): Buffer {
  if (gzip[0] !== 0x1f || gzip[1] !== 0x8b || gzip[FLAGS] !== 0) throw new Error('expected a gzip member with no header flags');
  const json = Buffer.from(JSON.stringify({ v: 1, ...meta, crc32 }));
  const extra = Buffer.alloc(2 + 4);
  extra.writeUInt16LE(4 + json.length, 0); // XLEN
  SUBFIELD_ID.copy(extra, 2);
  extra.writeUInt16LE(json.length, 4);
  const header = Buffer.from(gzip.subarray(0, GZIP_HEADER_BYTES));
  header[FLAGS] = FEXTRA;
  return Buffer.concat([header, extra, json, gzip.subarray(GZIP_HEADER_BYTES)]);
}

/** Reads the metadata from the start of a DLQ file (at least its header); throws CorruptFile. */
export function decodeMeta(head: Buffer): { meta: DlqMeta; bodyOffset: number } {
  const { json, bodyOffset } = head.length >= ZSTD_HEADER_BYTES && head.readUInt32LE(0) === ZSTD_SKIPPABLE ? skippableFrame(head) : extraField(head);
  let meta: unknown;
  try {
    meta = JSON.parse(json.toString('utf8'));
  } catch {
    throw new CorruptFile('unreadable metadata in the gzip extra field');
  }
  if (!isMeta(meta)) throw new CorruptFile('metadata lacks a field or has a wrong type');
  return { meta, bodyOffset };
}

/** The "EI" subfield's bytes and where the deflate data starts, from a gzip header with FEXTRA. */
function extraField(head: Buffer): { json: Buffer; bodyOffset: number } {
  if (head.length < GZIP_HEADER_BYTES + 2 || head[0] !== 0x1f || head[1] !== 0x8b || head[FLAGS] !== FEXTRA) {
    throw new CorruptFile('not a DLQ gzip file (no extra header field)');
  }
  const xlen = head.readUInt16LE(GZIP_HEADER_BYTES);
  const bodyOffset = GZIP_HEADER_BYTES + 2 + xlen;
  if (head.length < bodyOffset || xlen < 4 || !head.subarray(12, 14).equals(SUBFIELD_ID)) throw new CorruptFile('truncated or foreign gzip extra field');
  const length = head.readUInt16LE(14);
  // The subfield must fit the extra field: past it lie the compressed bytes, not metadata.
  if (16 + length > bodyOffset) throw new CorruptFile('truncated or foreign gzip extra field');
  return { json: head.subarray(16, 16 + length), bodyOffset };
}

/** The metadata frame's bytes and where the zstd object starts. */
function skippableFrame(head: Buffer): { json: Buffer; bodyOffset: number } {
  const bodyOffset = ZSTD_HEADER_BYTES + head.readUInt32LE(4);
  if (head.length < bodyOffset) throw new CorruptFile('truncated zstd metadata frame');
  return { json: head.subarray(ZSTD_HEADER_BYTES, bodyOffset), bodyOffset };
}

/** Any JSON parses (`null`, a number, an array): the shape is checked before a field is read. */
function isMeta(value: unknown): value is DlqMeta {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const meta = value as Partial<DlqMeta>;
  return (
    meta.v === 1 &&
    typeof meta.key === 'string' && meta.key !== '' &&
    [meta.events, meta.firstReceivedAt, meta.lastReceivedAt, meta.spilledAt, meta.crc32].every(Number.isSafeInteger) &&
    meta.events! >= 0 &&
    (meta.ifAbsent === undefined || meta.ifAbsent === true)
  );
}

/**
 * The object as first PUT, from a whole DLQ file, after checking it: the stored CRC32 of the
 * object, the compressed stream's own checks, and the number of lines against the event count.
 */
export async function verifiedObject(file: Buffer): Promise<{ meta: DlqMeta; body: Buffer }> {
  const { meta, bodyOffset } = decodeMeta(file);
  const codec = codecOfKey(meta.key);
  const zstdFile = file.readUInt32LE(0) === ZSTD_SKIPPABLE;
  if (zstdFile !== (codec === 'zstd')) throw new CorruptFile(`a ${zstdFile ? 'zstd' : 'gzip'} file for a key whose extension says ${codec}`);
  let body: Buffer;
  if (zstdFile) body = file.subarray(bodyOffset);
  else {
    body = Buffer.concat([file.subarray(0, GZIP_HEADER_BYTES), file.subarray(bodyOffset)]);
    body[FLAGS] = 0;
  }
  // The plain object is kept gzipped on disk: the object is what that inflates to.
  if (codec === 'none') body = await gunzip(body).catch((err: Error) => { throw new CorruptFile(`gzip stream is damaged: ${err.message}`); });
  if (zlib.crc32(body) !== meta.crc32) throw new CorruptFile('checksum mismatch: the file changed after it was written');
  const lines = await countLines(body, codec);
  if (lines !== meta.events) throw new CorruptFile(`holds ${lines} lines, its header says ${meta.events} events`);
  return { meta, body };
}

/** The lines of an object, streamed so that checking a file never holds its uncompressed size in memory. */
async function countLines(body: Buffer, codec: Codec): Promise<number> {
  let lines = 0;
  const counter = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++;
      done();
    },
  });
  try {
    if (codec === 'none') await pipeline(Readable.from([body]), counter);
    else await pipeline(Readable.from([body]), codec === 'gzip' ? zlib.createGunzip() : zlib.createZstdDecompress(), counter);
  } catch (err) {
    throw new CorruptFile(`${codec} stream is damaged: ${(err as Error).message}`);
  }
  return lines;
}
