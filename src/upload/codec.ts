// How an object's JSON lines are compressed (COMPRESSION), and what follows from the codec: the
// key's extension and the object's HTTP headers. Query engines (Athena, Spark, DuckDB) pick the
// decompressor by the extension, so the extension always names the codec of the bytes.
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import type { Codec } from '../config.js';
import { CODECS } from '../config/table.js';

export type { Codec } from '../config.js';

/** The level of each codec that has one (GZIP_LEVEL, ZSTD_LEVEL). */
export interface Levels {
  readonly gzip: number;
  readonly zstd: number;
}

export const EXTENSIONS: Readonly<Record<Codec, string>> = { gzip: '.jsonl.gz', zstd: '.jsonl.zst', none: '.jsonl' };

const gzip = promisify(zlib.gzip);
const zstd = promisify(zlib.zstdCompress);
/** zlib's default output buffer. */
const MIN_CHUNK_BYTES = 16 * 1024;

/**
 * The object's bytes, compressed off the event loop (libuv's thread pool).
 *
 * zlib goes back to the event loop each time its output buffer (`chunkSize`) fills, then hands the
 * rest to the pool again: with its default of 16 KiB a 5000-event batch took about 20 such round
 * trips, each a main-thread callback and a pool job. An output buffer of half the lines makes it
 * one for anything that compresses 2 to 1 or better (events do about 6 to 1 at GZIP_LEVEL 6).
 */
export async function compress(lines: Buffer, codec: Codec, levels: Levels): Promise<Buffer> {
  if (codec === 'none') return lines;
  const chunkSize = Math.max(MIN_CHUNK_BYTES, Math.ceil(lines.length / 2));
  const out =
    codec === 'gzip'
      ? await gzip(lines, { level: levels.gzip, chunkSize })
      : await zstd(lines, { chunkSize, params: { [zlib.constants.ZSTD_c_compressionLevel]: levels.zstd } });
  // One chunk is a view of the whole output buffer: copied to its own size, so that an upload
  // (and its retries) holds the object, not up to half the lines.
  return out.buffer.byteLength > 2 * out.length ? Buffer.from(out) : out;
}

/**
 * The headers of an object. gzip keeps `Content-Encoding: gzip` over `application/x-ndjson`, as
 * objects have always been written (readers that fetch them over HTTP rely on it). zstd is a file
 * type, not a content coding, because most HTTP clients and CDNs cannot decode a zstd
 * Content-Encoding and those that can would hand the reader plain lines under a `.zst` name.
 */
export function objectHeaders(codec: Codec): { ContentType: string; ContentEncoding?: string } {
  if (codec === 'gzip') return { ContentType: 'application/x-ndjson', ContentEncoding: 'gzip' };
  if (codec === 'zstd') return { ContentType: 'application/zstd' };
  return { ContentType: 'application/x-ndjson' };
}

/**
 * The codec of the object at a key, by its extension: the one source of it for every batch (a
 * batch replayed from the WAL, a DLQ file) whatever COMPRESSION is now. A key with none of the
 * extensions is gzip, the only codec before COMPRESSION; the server makes no such key.
 */
export function codecOfKey(key: string): Codec {
  return CODECS.find((codec) => key.endsWith(EXTENSIONS[codec])) ?? 'gzip';
}
