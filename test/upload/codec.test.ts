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

t.test('a batch is compressed in one or two trips to the thread pool, not one per 16 KiB of output', async (t) => {
  // zlib runs a callback on the event loop each time its output buffer fills (16 KiB by default):
  // counted here by the async hooks of its handle. Lines of random hex compress about 2 to 1, far
  // worse than events do, so the output is large (about 500 KiB from 1 MiB).
  const { createHook } = await import('node:async_hooks');
  const { randomBytes } = await import('node:crypto');
  const lines = Buffer.from(Array.from({ length: 4000 }, () => `{"received_at":1700000000000,"event":{"id":"${randomBytes(120).toString('hex')}"}}\n`).join(''));
  for (const codec of ['gzip', 'zstd'] as const) {
    const handles = new Set<number>();
    let callbacks = 0;
    const hook = createHook({
      init: (id, type) => void (type === 'ZLIB' && handles.add(id)),
      before: (id) => void (handles.has(id) && callbacks++),
    }).enable();
    const out = await compress(lines, codec, { gzip: 6, zstd: 1 });
    hook.disable();
    t.ok(out.length > lines.length / 4, `${codec}: the output is large (${out.length} bytes)`);
    t.ok(callbacks >= 1 && callbacks <= 3, `${codec}: ${callbacks} callbacks on the event loop`);
    t.strictSame(codec === 'gzip' ? gunzipSync(out) : zstdDecompressSync(out), lines);
    // Its memory: about the object's own size, not the output buffer's.
    t.ok(out.buffer.byteLength <= 2 * out.length, `${codec}: holds ${out.buffer.byteLength} bytes for ${out.length}`);
  }
  // A small object is not held in a buffer of half the lines either (a small one may share Node's pool).
  for (const codec of ['gzip', 'zstd'] as const) {
    const lines = Buffer.concat(Array.from({ length: 100 }, () => LINES));
    const out = await compress(lines, codec, { gzip: 6, zstd: 1 });
    t.ok(out.buffer.byteLength <= Math.max(2 * out.length, Buffer.poolSize) && out.buffer.byteLength < lines.length / 4, `${codec}: holds ${out.buffer.byteLength} bytes for ${out.length}`);
  }
});
