// The upload loop against a real S3-compatible server (the fault proxy in front where S3 must
// stall or refuse): each batch gzipped at the configured level and PUT at its key, settled once
// as stored, spilled or dropped; UPLOAD_CONCURRENCY in flight and UPLOAD_QUEUE_MAX_BATCHES
// waiting before hasRoom() says no; the cut made durable before the PUT; abort() cuts what is in
// flight and sends every batch from then on straight to the spill.
import { promisify } from 'node:util';
import { gunzipSync, gzipSync, zstdCompress, constants as zlibConstants, zstdDecompressSync } from 'node:zlib';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import t, { type Test } from 'tap';
import { createUploadMetrics } from '../../src/metrics/upload.js';
import { type Batch, encodeLines, objectKey } from '../../src/upload/batcher.js';
import { type Settled, type Spill, UploadLoop } from '../../src/upload/loop.js';
import { createS3Client, S3Uploader } from '../../src/upload/s3.js';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.js';
import { entry } from '../helpers/pipeline.js';
import { type S3Server, startS3 } from '../helpers/s3.js';
import type { LogLine } from '../helpers/server.js';

let seq = 0;
/** A batch of these event texts, received now, at a key of its own. */
function batch(...events: string[]): Batch {
  return batchWith('.jsonl.gz', ...events);
}

/** The same, at a key with this extension. */
function batchWith(extension: string, ...events: string[]): Batch {
  const e = entry(...events);
  const id = `unit-${++seq}`;
  const segments = [{ entry: e, from: 0, to: e.count }];
  const cut = { id, key: objectKey('raw', e.receivedAt, id, extension), events: e.count, bytes: 0, firstReceivedAt: e.receivedAt, lastReceivedAt: e.receivedAt, segments };
  return { ...cut, bytes: encodeLines(cut).length };
}

interface Setup {
  s3: S3Server;
  proxy: FaultProxy;
  loop: UploadLoop;
  registry: Registry;
  logs: LogLine[];
  settled: [string, Settled][];
  spilled: { key: string; body: Buffer }[];
  slotsFreed: () => number;
  /** Resolves once `n` batches have settled. */
  settledCount(n: number): Promise<void>;
}

interface SetupOptions {
  concurrency?: number;
  maxQueuedBatches?: number;
  gzipLevel?: number;
  zstdLevel?: number;
  spillKeeps?: boolean;
  spill?: Spill;
  keepUnspilledMs?: number;
}

async function setup(t: Test, { concurrency = 2, maxQueuedBatches = 4, gzipLevel = 1, zstdLevel = 1, spillKeeps = true, spill, keepUnspilledMs }: SetupOptions = {}): Promise<Setup> {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  // Stalled PUTs are answered before the proxy and S3 close.
  t.teardown(() => proxy.release());
  const client = createS3Client({ endpoint: proxy.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
  t.teardown(() => client.destroy());
  const logs: LogLine[] = [];
  const log = pino({ formatters: { level: (label) => ({ level: label }) } }, { write: (text: string) => logs.push(JSON.parse(text) as LogLine) });
  const registry = new Registry();
  const metrics = createUploadMetrics(registry);
  const uploader = new S3Uploader(client, { bucket: 'test-bucket', maxAttempts: 1, timeoutMs: 5000 }, metrics, pino({ level: 'silent' }));
  const settled: [string, Settled][] = [];
  const spilled: { key: string; body: Buffer }[] = [];
  let freed = 0;
  let wake = (): void => {};
  const loop = new UploadLoop(
    uploader,
    spill ?? { save: async (b, body) => (spilled.push({ key: b.key, body }), spillKeeps), full: false },
    { concurrency, maxQueuedBatches, gzipLevel, zstdLevel, keepUnspilledMs },
    metrics,
    log,
    () => freed++,
    (b, outcome) => {
      settled.push([b.key, outcome]);
      wake();
    },
  );
  t.teardown(() => (loop.abort(), loop.onIdle()));
  return {
    s3,
    proxy,
    loop,
    registry,
    logs,
    settled,
    spilled,
    slotsFreed: () => freed,
    settledCount: async (n) => {
      while (settled.length < n) await new Promise<void>((resolve) => (wake = resolve));
    },
  };
}

/** An unlabelled counter's value. */
const value = async (registry: Registry, name: string): Promise<number> => (await registry.getSingleMetric(name)!.get()).values[0]!.value;

/** Turns until `check` holds; no timer, bounded by the test's timeout. */
async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((resolve) => setImmediate(resolve));
}

t.test('the codec follows the key: .jsonl.zst zstd at ZSTD_LEVEL (Content-Type application/zstd, no Content-Encoding), .jsonl the lines as they are; .jsonl.gz keeps Content-Encoding gzip', async (t) => {
  const { s3, loop, settledCount } = await setup(t, { zstdLevel: 19 });
  const zstd = batchWith('.jsonl.zst', '{"a":1}', '{"a":2}');
  const plain = batchWith('.jsonl', '{"b":1}');
  const gzip = batchWith('.jsonl.gz', '{"c":1}');
  loop.submit(zstd);
  loop.submit(plain);
  loop.submit(gzip);
  await settledCount(3);
  const byKey = new Map((await s3.objects()).map((o) => [o.key, o]));
  const z = byKey.get(zstd.key)!;
  t.strictSame(z.gzip, await promisify(zstdCompress)(encodeLines(zstd), { params: { [zlibConstants.ZSTD_c_compressionLevel]: 19 } }), 'zstd at ZSTD_LEVEL');
  t.strictSame(zstdDecompressSync(z.gzip), encodeLines(zstd));
  t.match(z, { contentType: 'application/zstd', contentEncoding: undefined });
  const p = byKey.get(plain.key)!;
  t.strictSame(p.gzip, encodeLines(plain), 'COMPRESSION=none: the JSON lines');
  t.match(p, { contentType: 'application/x-ndjson', contentEncoding: undefined });
  t.match(byKey.get(gzip.key)!, { contentType: 'application/x-ndjson', contentEncoding: 'gzip' }, 'the default, as before');
});

t.test('a batch is gzipped at the configured level, PUT at its key, counted, and settled stored once', async (t) => {
  const { s3, loop, registry, settled, settledCount } = await setup(t, { gzipLevel: 9 });
  t.equal(loop.lastStoredAt(), 0, 'nothing stored yet');
  const b = batch('{"a":1}', '{"a":2}', '{"a":3}');
  const before = Date.now();
  loop.submit(b);
  t.equal(loop.idleSince(), undefined, 'not idle while a batch waits or uploads');
  await settledCount(1);
  await loop.onIdle();
  t.strictSame(settled, [[b.key, 'stored']]);
  const [object, ...others] = await s3.objects();
  t.equal(others.length, 0);
  t.equal(object!.key, b.key);
  t.strictSame(gunzipSync(object!.gzip), encodeLines(b), 'the batch\'s JSON lines');
  t.strictSame(object!.gzip, gzipSync(encodeLines(b), { level: 9 }), 'gzipped at GZIP_LEVEL');
  t.equal(await value(registry, 's3_events_stored_total'), 3);
  t.equal(await value(registry, 's3_objects_stored_total'), 1);
  t.equal(await value(registry, 's3_bytes_stored_total'), object!.gzip.length, 'compressed bytes');
  const text = await registry.metrics();
  for (const [name, sum] of [['batch_events', 3], ['batch_uncompressed_bytes', b.bytes], ['batch_compressed_bytes', object!.gzip.length]] as const) t.match(text, `${name}_sum ${sum}\n${name}_count 1\n`, `${name}: the batch observed once`);
  t.ok(loop.lastStoredAt() >= before, 'lastStoredAt: when S3 took it');
  t.ok(loop.idleSince()! >= before, 'idle since the batch finished');
});

t.test('UPLOAD_CONCURRENCY in flight, UPLOAD_QUEUE_MAX_BATCHES waiting: then hasRoom() is false until a slot frees', async (t) => {
  const { proxy, loop, settledCount, slotsFreed } = await setup(t, { concurrency: 1, maxQueuedBatches: 1 });
  proxy.decide = () => 'stall';
  loop.submit(batch('{"i":1}'));
  await until(() => proxy.puts.length === 1);
  t.equal(loop.inFlight, 1);
  t.equal(loop.queued, 0);
  t.equal(loop.hasRoom(), true, 'one in flight, none waiting');
  loop.submit(batch('{"i":2}'));
  t.equal(loop.queued, 1);
  t.equal(loop.hasRoom(), false, 'one waiting: full');
  let room = false;
  const onRoom = loop.onRoom().then(() => (room = true));
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(room, false, 'onRoom waits');
  t.equal(proxy.puts.length, 1, 'the second waits for the slot, not sent');
  proxy.decide = () => 'pass';
  proxy.release();
  await onRoom;
  t.equal(loop.hasRoom(), true);
  await settledCount(2);
  await loop.onIdle();
  t.ok(slotsFreed() >= 2, `slotFree called as batches finish (${slotsFreed()})`);
  t.equal(proxy.puts.length, 2);
});

t.test('S3 refusing for good: the error is logged with its code, the gzip goes to the spill; spilled or dropped as the spill says', async (t) => {
  let keeps = true;
  const spilled: { key: string; body: Buffer }[] = [];
  const { proxy, loop, logs, settled, settledCount, registry } = await setup(t, { spill: { save: async (b, body) => (spilled.push({ key: b.key, body }), keeps), full: false } });
  proxy.decide = () => ({ status: 403, code: 'AccessDenied' });
  const first = batch('{"x":1}', '{"x":2}');
  loop.submit(first);
  await settledCount(1);
  keeps = false;
  const second = batch('{"y":1}');
  loop.submit(second);
  await settledCount(2);
  t.strictSame(settled, [[first.key, 'spilled'], [second.key, 'dropped']]);
  t.strictSame(gunzipSync(spilled[0]!.body), encodeLines(first), 'the spill gets the gzip body as it would have been PUT');
  t.strictSame(gunzipSync(spilled[1]!.body), encodeLines(second));
  t.match(logs.filter((l) => l.level === 'error'), [
    { msg: 'S3 upload failed for good', key: first.key, events: 2, code: 'AccessDenied' },
    { msg: 'S3 upload failed for good', key: second.key, events: 1, code: 'AccessDenied' },
  ]);
  t.equal(await value(registry, 's3_events_stored_total'), 0, 'nothing counted as stored');
  t.equal(loop.lastStoredAt(), 0);
});

t.test('the PUT waits for the cut to be durable', async (t) => {
  const { proxy, loop, settled, settledCount } = await setup(t);
  let durable = (): void => {};
  const b = { ...batch('{"d":1}'), durable: new Promise<void>((resolve) => (durable = resolve)) };
  loop.submit(b);
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
  t.equal(proxy.puts.length, 0, 'no PUT before the cut is on disk');
  durable();
  await settledCount(1);
  t.strictSame(settled, [[b.key, 'stored']]);
  t.equal(proxy.puts.length, 1);
});

t.test('abort(): the PUT in flight is cut and spilled without an error line; from then on every batch goes straight to the spill', async (t) => {
  const { proxy, loop, logs, settled, settledCount, spilled } = await setup(t, { concurrency: 1, maxQueuedBatches: 1 });
  proxy.decide = () => 'stall';
  const inFlight = batch('{"f":1}');
  const waiting = batch('{"w":1}');
  loop.submit(inFlight);
  loop.submit(waiting);
  await until(() => proxy.puts.length === 1);
  t.equal(loop.hasRoom(), false);
  loop.abort();
  t.equal(loop.hasRoom(), true, 'aborted: always room, so the batcher can hand everything over');
  const late = batch('{"l":1}');
  loop.submit(late);
  await settledCount(3);
  t.strictSame(settled.sort(), [[inFlight.key, 'spilled'], [waiting.key, 'spilled'], [late.key, 'spilled']].sort());
  t.strictSame(spilled.map((s) => s.key).sort(), [inFlight.key, waiting.key, late.key].sort());
  t.equal(proxy.puts.length, 1, 'no PUT after the abort');
  t.strictSame(logs.filter((l) => l.level === 'error'), [], 'cut by shutdown, not refused by S3: no "failed for good"');
});

t.test('a spill that rejects (a bug: DlqStore.save never does) loses the batch loudly: logged and settled dropped', async (t) => {
  // A rejecting spill cannot be produced with the real DLQ, which catches every failure: injected here.
  const { proxy, loop, logs, settled, settledCount } = await setup(t, { spill: { save: () => Promise.reject(new Error('injected spill bug')), full: false } });
  proxy.decide = () => ({ status: 403, code: 'AccessDenied' });
  const b = batch('{"z":1}');
  loop.submit(b);
  await settledCount(1);
  t.strictSame(settled, [[b.key, 'dropped']]);
  t.match(logs.find((l) => l.msg === 'batch lost: neither uploaded nor spilled'), { level: 'error', key: b.key, events: 1, err: { message: 'injected spill bug' } });
});

t.test('keepUnspilledMs (ACK_LEVEL=disk): a batch neither S3 nor the spill took is tried again, holding its slot, until one takes it; logged once', async (t) => {
  let keeps = false;
  const saves: string[] = [];
  const { proxy, loop, logs, settled, settledCount } = await setup(t, { concurrency: 1, maxQueuedBatches: 1, keepUnspilledMs: 5, spill: { save: async (b) => (saves.push(b.key), keeps), full: true } });
  proxy.decide = () => ({ status: 403, code: 'AccessDenied' });
  const kept = batch('{"k":1}', '{"k":2}');
  const behind = batch('{"b":1}');
  loop.submit(kept);
  loop.submit(behind);
  await until(() => saves.length >= 3);
  t.strictSame(settled, [], 'not settled while neither takes it: its events stay in the WAL');
  t.ok(saves.every((key) => key === kept.key), 'the batch behind it waits: the slot is held');
  t.equal(loop.hasRoom(), false, 'and the queue is full: the batcher stops pulling');
  t.equal(logs.filter((l) => l.msg === 'batch kept: neither S3 nor the DLQ took it; it stays in the WAL and is tried again').length, 1, 'one warn line a batch');
  keeps = true;
  await settledCount(2);
  t.strictSame(settled, [[kept.key, 'spilled'], [behind.key, 'spilled']]);
  proxy.decide = () => 'pass';
  const later = batch('{"s":1}');
  loop.submit(later);
  await settledCount(3);
  t.strictSame(settled[2], [later.key, 'stored']);
});

t.test('keepUnspilledMs: abort() ends the wait; a batch still neither stored nor spilled is settled kept, never dropped', async (t) => {
  const { proxy, loop, settled, settledCount } = await setup(t, { concurrency: 1, keepUnspilledMs: 60_000, spill: { save: async () => false, full: true } });
  proxy.decide = () => ({ status: 403, code: 'AccessDenied' });
  const b = batch('{"a":1}');
  loop.submit(b);
  await until(() => proxy.puts.length === 1);
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
  loop.abort();
  await settledCount(1);
  t.strictSame(settled, [[b.key, 'kept']], 'no 60 s wait: the abort ends it');
});

t.test('a batch replayed short (ifAbsent) is PUT If-None-Match: where S3 answers 412 (its complete object is there) it is stored, never overwritten nor spilled', async (t) => {
  const { s3, proxy, loop, settled, settledCount, spilled } = await setup(t);
  const short = { ...batch('{"s":1}'), ifAbsent: true };
  const fresh = { ...batch('{"f":1}'), ifAbsent: true };
  // Injected on the wire: s3rver ignores If-None-Match on a PUT; S3 answers 412 where an object is.
  proxy.decide = ({ key }) => (key === short.key ? { status: 412, code: 'PreconditionFailed' } : 'pass');
  loop.submit(short);
  loop.submit(fresh);
  await settledCount(2);
  t.strictSame(settled.sort(), [[short.key, 'stored'], [fresh.key, 'stored']].sort());
  t.strictSame(spilled, [], 'nothing spilled');
  t.ok(proxy.puts.every((put) => put.headers['if-none-match'] === '*'), 'both PUTs conditional');
  t.same((await s3.objects()).map((o) => o.key), [fresh.key], 'a free key takes the short batch');
});
