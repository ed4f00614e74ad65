// COMPRESSION: each codec's bytes decode to the lines given, at the level given; the extension,
// the headers and the codec read back from a key agree with each other.
import { gunzipSync, gzipSync, zstdDecompressSync } from 'node:zlib';
import t from 'tap';
import { CODECS } from '../../src/config/table.js';
import { codecOfKey, compress, EXTENSIONS, objectHeaders } from '../../src/upload/codec.js';

const LINES = Buffer.from(Array.from({ length: 200 }, (_, i) => `{"received_at":1700000000000,"event":{"type":"t${i % 7}","n":${i}}}\n`).join(''));

t.test('each codec gives bytes its reader turns back into the lines, at the level asked', async (t) => {
  const levels = { gzip: 9, zstd: 19 };
  const gz = await compress(LINES, 'gzip', levels);
  t.strictSame(gz, gzipSync(LINES, { level: 9 }), 'gzip at GZIP_LEVEL');
  const zs = await compress(LINES, 'zstd', levels);
  t.strictSame(zstdDecompressSync(zs), LINES);
  const fast = await compress(LINES, 'zstd', { ...levels, zstd: 1 });
  t.not(fast.length, zs.length, 'the zstd level is applied');
  t.ok(zs.length < LINES.length / 4, 'zstd compresses');
  t.equal(await compress(LINES, 'none', levels), LINES, 'none: the lines themselves');
  t.strictSame(gunzipSync(gz), LINES);
});

t.test('the extension names the codec, and the codec is read back from a key', async (t) => {
  t.strictSame(EXTENSIONS, { gzip: '.jsonl.gz', zstd: '.jsonl.zst', none: '.jsonl' });
  for (const codec of CODECS) t.equal(codecOfKey(`raw/2026/01/01/00/id${EXTENSIONS[codec]}`), codec, codec);
  t.equal(codecOfKey('raw/a'), 'gzip', 'no extension: gzip, the only codec before COMPRESSION');
});

t.test('headers: gzip keeps Content-Encoding over x-ndjson; zstd is a file type; none is x-ndjson', async (t) => {
  t.strictSame(objectHeaders('gzip'), { ContentType: 'application/x-ndjson', ContentEncoding: 'gzip' });
  t.strictSame(objectHeaders('zstd'), { ContentType: 'application/zstd' });
  t.strictSame(objectHeaders('none'), { ContentType: 'application/x-ndjson' });
});
