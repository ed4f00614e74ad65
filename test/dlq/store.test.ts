// The DLQ store on real files: atomic durable spill, capacity and TTL eviction with exact counts
// (TTL with an injected clock), the start-up scan, quarantine, a directory that cannot be written,
// and a spill that never rejects whatever fails.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync, zstdCompressSync } from 'node:zlib';
import t from 'tap';
import { Disk } from '../../src/disk/disk.js';
import { decodeMeta } from '../../src/dlq/file.js';
import { batch, setup, T0 } from '../helpers/dlq.js';
import { runUnderFdLimit } from '../helpers/fd-limit.js';
import { ROOT } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

t.test('zstd and plain batches spill as .jsonl.zst and .jsonl.gz files that a restart finds and reads back byte for byte', async (t) => {
  const { store, open } = await setup(t);
  const { batch: b, lines } = batch(2);
  const zstd = zstdCompressSync(lines);
  const zKey = b.key.replace('.jsonl.gz', '.jsonl.zst');
  t.ok(await store.save({ ...b, key: zKey }, zstd));
  const p = batch(3);
  const pKey = p.batch.key.replace('.jsonl.gz', '.jsonl');
  t.ok(await store.save({ ...p.batch, key: pKey }, Buffer.from(p.lines)));
  store.close();
  const again = await open();
  t.strictSame(again.list().map((f) => f.name).sort(), [`${b.id}.jsonl.zst`, `${p.batch.id}.jsonl.gz`].sort(), 'both found by the start-up scan');
  const byKey = new Map<string, Buffer>();
  for (const file of again.list()) {
    const read = await again.read(file);
    byKey.set(read!.meta.key, read!.body);
  }
  t.ok(byKey.get(zKey)!.equals(zstd), 'the zstd object as first PUT');
  t.equal(byKey.get(pKey)!.toString(), p.lines, 'the plain object as first PUT');
});

t.test('a spilled batch is one complete gzip file under its final name, readable by any gzip tool', async (t) => {
  const { store, dir } = await setup(t);
  const { batch: b, gzip, lines } = batch(3);
  await store.save(b, gzip);
  t.same(readdirSync(dir).sort(), [`${b.id}.jsonl.gz`, '.lock', 'corrupt'].sort(), 'no temp file left beside it');
  const file = readFileSync(join(dir, `${b.id}.jsonl.gz`));
  t.equal(gunzipSync(file).toString(), lines, 'zcat shows the JSON lines');
  t.match(decodeMeta(file).meta, { v: 1, key: b.key, events: 3, firstReceivedAt: T0, spilledAt: T0 });
  const read = await store.read(store.oldest()!);
  t.ok(read!.body.equals(gzip), 'the object to re-upload is byte for byte the gzip first PUT');
  t.equal(store.files, 1);
  t.equal(store.events, 3);
  t.equal(store.bytes, file.length);
});

t.test('DLQ_MAX_FILES: the oldest files are evicted, their events counted, each named in a warn line', async (t) => {
  const { store, clock, logs, value } = await setup(t, { maxFiles: 3 });
  const saved = [];
  for (let i = 0; i < 5; i++) {
    clock.now = T0 + i * 1000;
    saved.push(batch(i + 1));
    await store.save(saved[i]!.batch, saved[i]!.gzip);
  }
  t.same(store.list().map((f) => f.meta.events), [3, 4, 5], 'the three newest stay');
  t.equal(await value('dlq_events_dropped_total', '{reason="capacity"}'), 1 + 2);
  t.same(
    logs.filter((l) => l.level === 40).map((l) => l.msg),
    [`DLQ capacity → removed=${saved[0]!.batch.id}.jsonl.gz`, `DLQ capacity → removed=${saved[1]!.batch.id}.jsonl.gz`],
  );
});

t.test('a spill that capacity can only make room for by evicting itself (the older files busy re-uploading) is not kept: save says so', async (t) => {
  const { store, value } = await setup(t, { maxFiles: 1 });
  const old = batch(2);
  t.equal(await store.save(old.batch, old.gzip), true);
  store.list()[0]!.busy = true; // being re-uploaded: eviction must pass it by
  const added = batch(3);
  // On main save() said true and evicted the file it had just written: at ACK_LEVEL=s3 the client
  // got a 202 "stored in the DLQ" for events already gone.
  t.equal(await store.save(added.batch, added.gzip), false, 'not stored: the client is told not_stored');
  t.same(store.list().map((f) => f.meta.events), [2], 'the busy file stays');
  t.equal(await value('dlq_events_dropped_total', '{reason="capacity"}'), 3, 'the new file\'s events, counted once');
  t.equal(await value('dlq_events_spilled_total'), 2 + 3);
});

t.test('concurrent spills over capacity: every evicted event counted once, none twice', async (t) => {
  const { store, value, logs } = await setup(t, { maxFiles: 3 });
  await Promise.all(Array.from({ length: 10 }, (_, i) => batch(i + 1)).map((b) => store.save(b.batch, b.gzip)));
  const dropped = await value('dlq_events_dropped_total', '{reason="capacity"}');
  t.equal(store.files, 3);
  t.equal(store.events + dropped, 55, 'kept + dropped = every event spilled (1 + 2 + ... + 10)');
  t.equal(logs.filter((l) => l.msg.startsWith('DLQ capacity → removed=')).length, 7, 'one log line per evicted file');
});

t.test('DLQ_MAX_BYTES: evicts oldest until the bytes fit', async (t) => {
  const first = batch(10);
  const size = (await setup(t)).store; // measure one file's size
  await size.save(first.batch, first.gzip);
  const oneFile = size.bytes;
  const { store, value } = await setup(t, { maxBytes: oneFile * 2 + 10 });
  for (let i = 0; i < 4; i++) {
    const b = batch(10);
    await store.save(b.batch, b.gzip);
  }
  t.equal(store.files, 2);
  t.ok(store.bytes <= oneFile * 2 + 10);
  t.equal(await value('dlq_events_dropped_total', '{reason="capacity"}'), 20);
});

t.test('refusing when full (ACK_LEVEL=disk, s3): DLQ_MAX_FILES reached, a new batch is refused, nothing evicted or dropped; room again once a file leaves', async (t) => {
  const { store, logs, value } = await setup(t, { maxFiles: 2, whenFull: 'refuse' });
  const [a, b, c] = [batch(1), batch(2), batch(3)];
  t.equal(await store.save(a.batch, a.gzip), true);
  t.equal(store.full, false, 'one file of two: room');
  t.equal(await store.save(b.batch, b.gzip), true);
  t.equal(store.full, true, 'DLQ_MAX_FILES files: full');
  t.equal(await store.save(c.batch, c.gzip), false, 'refused: the caller keeps the batch');
  t.same(store.list().map((f) => f.meta.events), [1, 2], 'the older files stay: nothing acknowledged is evicted');
  t.equal(await value('dlq_batches_refused_total'), 1);
  t.equal(await value('dlq_events_dropped_total', '{reason="capacity"}'), 0, 'nothing counted lost');
  t.equal(await value('dlq_events_spilled_total'), 3, 'the refused batch is not counted spilled');
  t.ok(logs.some((l) => l.level === 40 && l.msg === 'DLQ full: batch not written; new events are refused until S3 takes queued files back' && l.events === 3));
  await store.sweep();
  t.equal(store.files, 2, 'the sweep evicts nothing either');
  t.equal(await store.delete(store.oldest()!, 'reuploaded'), true);
  t.equal(store.full, false, 'room once a file is re-uploaded');
  t.equal(await store.save(c.batch, c.gzip), true, 'the kept batch goes in');
});

t.test('refusing when full: DLQ_MAX_BYTES is full while the last refused batch would not fit, not merely while it is reached', async (t) => {
  const probe = (await setup(t)).store;
  const ten = batch(10);
  await probe.save(ten.batch, ten.gzip);
  const oneFile = probe.bytes;
  const { store } = await setup(t, { maxBytes: oneFile * 2 + 10, whenFull: 'refuse' });
  for (let i = 0; i < 2; i++) {
    const b = batch(10);
    t.equal(await store.save(b.batch, b.gzip), true);
  }
  t.equal(store.full, false, 'below DLQ_MAX_BYTES, and nothing refused yet: a smaller batch might fit');
  const big = batch(10);
  t.equal(await store.save(big.batch, big.gzip), false, 'a third file would pass DLQ_MAX_BYTES');
  t.equal(store.full, true);
  t.equal(await store.delete(store.oldest()!, 'reuploaded'), true);
  t.equal(store.full, false, 'it would fit now');
});

t.test('refusing when full: a batch larger than the whole DLQ is refused, and does not keep the DLQ full for good', async (t) => {
  const big = batch(2000);
  const { store } = await setup(t, { maxBytes: 2048, whenFull: 'refuse' });
  t.ok(big.gzip.length > 2048, `the batch alone (${big.gzip.length} bytes) is more than DLQ_MAX_BYTES`);
  t.equal(await store.save(big.batch, big.gzip), false, 'refused: the caller keeps it');
  t.equal(store.full, false, 'an empty DLQ is not full: smaller batches still go in');
  const small = batch(1);
  t.equal(await store.save(small.batch, small.gzip), true);
});

t.test('refusing when full: a write that fails is not counted dropped (the caller still holds the events), and with no TTL nothing expires', async (t) => {
  const parent = tempDir(t, 'notadir');
  writeFileSync(join(parent, 'file'), 'a file where the DLQ directory should be');
  const broken = await setup(t, { dir: join(parent, 'file', 'dlq'), whenFull: 'refuse' });
  const b = batch(4);
  t.equal(await broken.store.save(b.batch, b.gzip), false);
  t.equal(await broken.value('dlq_write_failures_total'), 1);
  t.equal(await broken.value('dlq_events_dropped_total', '{reason="write_failed"}'), 0);
  const { store, clock } = await setup(t, { whenFull: 'refuse', ttlSeconds: undefined });
  await store.save(b.batch, b.gzip);
  clock.now = T0 + 10 * 365 * 86_400_000;
  await store.sweep();
  t.equal(store.files, 1, 'ten years on, still there');
});

t.test('DLQ_TTL_SECONDS: files older than the TTL are deleted at the sweep, counted exactly', async (t) => {
  const { store, clock, value, logs } = await setup(t, { ttlSeconds: 60 });
  const old = batch(7);
  await store.save(old.batch, old.gzip);
  clock.now = T0 + 30_000;
  const young = batch(2);
  await store.save(young.batch, young.gzip);
  clock.now = T0 + 61_000;
  await store.sweep();
  t.same(store.list().map((f) => f.meta.events), [2]);
  t.equal(await value('dlq_files_expired_total'), 1);
  t.equal(await value('dlq_events_dropped_total', '{reason="ttl"}'), 7);
  t.ok(logs.some((l) => l.msg === `DLQ TTL → removed=${old.batch.id}.jsonl.gz`));
  clock.now = T0 + 91_000;
  await store.sweep();
  t.equal(store.files, 0);
  t.equal(await value('dlq_events_dropped_total', '{reason="ttl"}'), 9);
});

t.test('start-up: files of an earlier run are indexed oldest first, temp leftovers removed, corrupt files moved aside', async (t) => {
  const first = await setup(t);
  const a = batch(1);
  const b = batch(2);
  first.clock.now = T0 + 5;
  await first.store.save(b.batch, b.gzip);
  first.clock.now = T0 + 9;
  await first.store.save(a.batch, a.gzip);
  const dir = first.dir;
  writeFileSync(join(dir, `.tmp-${batch(1).batch.id}.jsonl.gz`), 'half a file');
  writeFileSync(join(dir, 'garbage.jsonl.gz'), 'not gzip at all');
  const whole = readFileSync(join(dir, `${a.batch.id}.jsonl.gz`));
  const truncated = batch(1).batch.id;
  writeFileSync(join(dir, `${truncated}.jsonl.gz`), whole.subarray(0, whole.length - 9)); // header fine, body cut
  writeFileSync(join(dir, 'README.txt'), 'an operator note: left alone');
  first.store.close(); // the earlier run ends; its lock goes with it

  const again = await setup(t, { dir });
  t.equal(again.store.files, 3, 'the truncated file passes the header scan; the body check catches it later');
  t.notOk(readdirSync(dir).some((n) => n.startsWith('.tmp-')), 'temp leftover removed');
  t.ok(existsSync(join(dir, 'corrupt', 'garbage.jsonl.gz')), 'bad header: moved aside, not deleted');
  t.ok(existsSync(join(dir, 'README.txt')));
  const order = again.store.list().map((f) => f.name);
  t.same(order.slice(0, 2), [`${b.batch.id}.jsonl.gz`, `${a.batch.id}.jsonl.gz`], 'oldest spill first');
  const truncatedFile = again.store.list().find((f) => f.name === `${truncated}.jsonl.gz`)!;
  t.equal(await again.store.read(truncatedFile), undefined, 'a damaged body is never handed out for upload');
  t.ok(existsSync(join(dir, 'corrupt', `${truncated}.jsonl.gz`)));
  t.equal(await again.value('dlq_files_corrupt_total'), 2);
  t.equal(await again.value('dlq_events_dropped_total', '{reason="quarantined"}'), 1, 'its header named 1 event');
  t.equal(again.store.files, 2);
});

t.test('a DLQ directory that cannot be written: logged, counted as dropped, no throw', async (t) => {
  const parent = tempDir(t, 'notadir');
  writeFileSync(join(parent, 'file'), 'a file where the DLQ directory should be');
  const { store, logs, value } = await setup(t, { dir: join(parent, 'file', 'dlq') });
  t.ok(logs.some((l) => l.level === 50 && l.msg.startsWith('DLQ directory unusable') && l.code === 'ENOTDIR'));
  const b = batch(4);
  await store.save(b.batch, b.gzip);
  t.ok(logs.some((l) => l.level === 50 && /^local DLQ save failed: ENOTDIR/.test(l.msg)));
  t.equal(await value('dlq_events_dropped_total', '{reason="write_failed"}'), 4);
  t.equal(await value('dlq_write_failures_total'), 1);
  t.equal(store.files, 0);
});

t.test('read-only mode (the dlq command) neither removes temp files nor moves corrupt ones', async (t) => {
  const dir = tempDir(t, 'ro');
  mkdirSync(join(dir, 'corrupt'));
  writeFileSync(join(dir, '.tmp-x.jsonl.gz'), 'a live server may be writing this');
  writeFileSync(join(dir, 'bad.jsonl.gz'), 'bad');
  const { store } = await setup(t, { dir, repair: false });
  t.equal(store.files, 0);
  t.ok(existsSync(join(dir, '.tmp-x.jsonl.gz')));
  t.ok(existsSync(join(dir, 'bad.jsonl.gz')));
});

t.test('save never rejects: a failed eviction (a directory where the oldest file was) is logged, that file stays uncounted, the next oldest goes', async (t) => {
  const { store, dir, logs, value } = await setup(t, { maxFiles: 1 });
  const first = batch(2);
  await store.save(first.batch, first.gzip);
  // A real fault, no mock: unlinking a non-empty directory fails even for root.
  rmSync(join(dir, `${first.batch.id}.jsonl.gz`));
  mkdirSync(join(dir, `${first.batch.id}.jsonl.gz`, 'inside'), { recursive: true });
  const second = batch(3);
  // Rejected on main: the process died right after a 202. Now it resolves, false: the stuck file
  // is still on disk, so still queued (tried again at the next sweep) and counted against
  // capacity, and the next oldest, here the new file, made room: it is not kept.
  t.equal(await store.save(second.batch, second.gzip), false);
  t.same(store.list().map((f) => f.name), [`${first.batch.id}.jsonl.gz`]);
  t.ok(logs.some((l) => l.level === 50 && l.msg.startsWith('DLQ file could not be removed: kept and tried again') && l.file === `${first.batch.id}.jsonl.gz` && l.reason === 'evicted'));
  t.equal(await value('dlq_events_dropped_total', '{reason="capacity"}'), 3, 'only the file that left; the stuck one is not counted while it is there (test/dlq/sweep.test.ts has the retry)');
  t.equal(await value('dlq_events_spilled_total'), 5);
});

t.test('save never rejects: a body it cannot encode is a counted write failure', async (t) => {
  const { store, logs, value } = await setup(t);
  const b = batch(4);
  await store.save(b.batch, Buffer.from('not gzip'));
  t.equal(await value('dlq_events_dropped_total', '{reason="write_failed"}'), 4);
  t.ok(logs.some((l) => l.level === 50 && l.msg.startsWith('local DLQ save failed: expected a gzip member')));
  t.equal(store.files, 0);
});

t.test('EMFILE while writing a spill (a real one, under ulimit -n) is retried with backoff, not a drop', async (t) => {
  const dir = tempDir(t, 'dlq');
  const { spilled, dropped, files } = await runUnderFdLimit<{ spilled: number; dropped: number; files: string[] }>(
    64,
    `
    import { readdirSync } from 'node:fs';
    import { gzipSync } from 'node:zlib';
    import { pino } from 'pino';
    import { Registry } from 'prom-client';
    import { DlqStore } from '${ROOT}dist/dlq/store.js';
    import { createDlqMetrics } from '${ROOT}dist/metrics/dlq.js';
    const registry = new Registry();
    const metrics = createDlqMetrics(registry);
    const store = await DlqStore.open({ dir: process.env.DIR, maxBytes: 1 << 30, maxFiles: 1000, ttlSeconds: 3600, now: Date.now, repair: true, prefix: 'raw', instanceId: 'test' }, metrics, pino({ level: 'silent' }));
    setTimeout(exhaustFds(), 300); // on main: EMFILE at once, the batch counted as dropped
    await store.save({ id: 'b1', key: 'raw/2027/01/15/08/b1.jsonl.gz', events: 3, firstReceivedAt: 1, lastReceivedAt: 1 }, gzipSync('a\\nb\\nc\\n'));
    const value = async (m, reason) => (await m.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
    console.log(JSON.stringify({ spilled: await value(metrics.eventsSpilled), dropped: await value(metrics.eventsDropped, 'write_failed'), files: readdirSync(process.env.DIR) }));
    store.close();
    `,
    { DIR: dir },
  );
  t.equal(dropped, 0);
  t.equal(spilled, 3);
  t.ok(files.includes('b1.jsonl.gz'));
});

t.test('a failed directory fsync after the rename is a warning, not a drop: the file is there', async (t) => {
  const dir = tempDir(t, 'dlq');
  // Injected through the disk layer: fsync of a directory cannot be made to fail on a healthy disk.
  const open = (async (...args: Parameters<typeof fs.open>) => {
    const handle = await fs.open(...args);
    if (args[0] === dir) handle.sync = () => Promise.reject(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' }));
    return handle;
  }) as typeof fs.open;
  const { store, logs, value } = await setup(t, { dir, disk: new Disk({ ...fs, open }) });
  const b = batch(3);
  await store.save(b.batch, b.gzip);
  t.equal(await value('dlq_events_dropped_total', '{reason="write_failed"}'), 0);
  t.equal(await value('dlq_write_failures_total'), 0);
  t.equal(await value('dlq_events_spilled_total'), 3);
  t.equal(store.files, 1);
  t.ok(existsSync(join(dir, `${b.batch.id}.jsonl.gz`)));
  t.ok(logs.some((l) => l.level === 40 && l.msg.startsWith('DLQ directory fsync failed after writing a file') && l.file === `${b.batch.id}.jsonl.gz`));
});

t.test('a batch larger than DLQ_MAX_BYTES is never written: dropped for capacity, nothing else evicted', async (t) => {
  const { store, dir, logs, value } = await setup(t, { maxBytes: 2000 });
  const small = batch(1);
  await store.save(small.batch, small.gzip);
  const big = batch(1);
  const random = Buffer.from(Array.from({ length: 4000 }, () => Math.floor(Math.random() * 256)));
  await store.save(big.batch, Buffer.concat([big.gzip.subarray(0, 10), random])); // too big to keep; never decoded
  t.notOk(existsSync(join(dir, `${big.batch.id}.jsonl.gz`)));
  t.same(store.list().map((f) => f.name), [`${small.batch.id}.jsonl.gz`], 'the file already queued stays');
  t.equal(await value('dlq_events_dropped_total', '{reason="capacity"}'), 1);
  t.ok(logs.some((l) => l.level === 40 && l.msg.startsWith(`DLQ capacity → not written=${big.batch.id}.jsonl.gz`)));
});

t.test('read() refuses a key outside S3_PREFIX or with ".." segments: moved aside, counted, never handed out', async (t) => {
  const { store, dir, value } = await setup(t);
  const b = batch(1);
  await store.save({ ...b.batch, key: `raw/../outside-prefix/${b.batch.id}.jsonl.gz` }, b.gzip);
  t.equal(await store.read(store.oldest()!), undefined);
  t.ok(existsSync(join(dir, 'corrupt', `${b.batch.id}.jsonl.gz`)));
  t.equal(await value('dlq_files_rejected_total', '{reason="bad_key"}'), 1);
  t.equal(store.files, 0);
});
