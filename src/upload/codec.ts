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

/** The object's bytes, compressed off the event loop (libuv's thread pool). */
export function compress(lines: Buffer, codec: Codec, levels: Levels): Promise<Buffer> {
  if (codec === 'gzip') return gzip(lines, { level: levels.gzip });
  if (codec === 'zstd') return zstd(lines, { params: { [zlib.constants.ZSTD_c_compressionLevel]: levels.zstd } });
  return Promise.resolve(lines);
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
