// One DLQ file: the batch's gzip object, with what its re-upload needs in the gzip header.
//
// Format: a standard single-member gzip file (RFC 1952) whose header carries the FEXTRA flag
// and one extra subfield, id "EI", holding UTF-8 JSON:
//   {"v":1,"key":...,"events":N,"firstReceivedAt":ms,"lastReceivedAt":ms,"spilledAt":ms,"crc32":C}
// and `"ifAbsent":true` for a batch that must never replace an object at its key (a WAL batch
// replayed short after corruption: src/upload/batcher.ts, Batch.ifAbsent).
// `crc32` is of the gzip object exactly as first PUT (the file without the extra field), so
// re-uploads send the same bytes and S3 can verify them. Any gzip tool reads the file as is:
// `zcat <file>` prints the batch's JSON lines.
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';

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

/** The DLQ file for a gzip object as zlib made it (a bare 10-byte header, no flags). */
export function encodeFile(gzip: Buffer, meta: Omit<DlqMeta, 'v' | 'crc32'>): Buffer {
  if (gzip[0] !== 0x1f || gzip[1] !== 0x8b || gzip[FLAGS] !== 0) throw new Error('expected a gzip member with no header flags');
  const json = Buffer.from(JSON.stringify({ v: 1, ...meta, crc32: zlib.crc32(gzip) }));
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
  const { json, bodyOffset } = extraField(head);
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
 * The gzip object as first PUT, from a whole DLQ file, after checking it: the stored CRC32 of the
 * object, the gzip stream's own CRC and length, and the number of lines against the event count.
 */
export async function verifiedObject(file: Buffer): Promise<{ meta: DlqMeta; gzip: Buffer }> {
  const { meta, bodyOffset } = decodeMeta(file);
  const gzip = Buffer.concat([file.subarray(0, GZIP_HEADER_BYTES), file.subarray(bodyOffset)]);
  gzip[FLAGS] = 0;
  if (zlib.crc32(gzip) !== meta.crc32) throw new CorruptFile('checksum mismatch: the file changed after it was written');
  let lines = 0;
  try {
    // Streamed so that checking a file never holds its uncompressed size in memory.
    await pipeline(
      Readable.from([gzip]),
      zlib.createGunzip(),
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++;
          done();
        },
      }),
    );
  } catch (err) {
    throw new CorruptFile(`gzip stream is damaged: ${(err as Error).message}`);
  }
  if (lines !== meta.events) throw new CorruptFile(`holds ${lines} lines, its header says ${meta.events} events`);
  return { meta, gzip };
}
