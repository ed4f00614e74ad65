// The idle-time re-uploader on real files, a real S3 server (s3rver) and the test proxy where S3
// must refuse, fail or stall: when it may run (idle for DLQ_REUPLOAD_IDLE_MS, or beside live
// uploads that succeed while their queue has room), one file at a time oldest first, the global and
// per-file backoff after failures, and a stop that lets go of the file in flight. Its clock is
// injected; its ticks are real timers (50 ms here), so the tests wait for ticks, never for time.
import fs from 'node:fs/promises';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import t, { type Test } from 'tap';
import { Disk } from '../../src/disk/disk.js';
import { type IdleSource, Reuploader } from '../../src/dlq/reupload.js';
import { DlqStore, type QueuedFile } from '../../src/dlq/store.js';
import { createDlqMetrics } from '../../src/metrics/dlq.js';
import { createUploadMetrics } from '../../src/metrics/upload.js';
import { S3Uploader } from '../../src/upload/s3.js';
import { batch, T0 } from '../helpers/dlq.js';
import { memoryLog } from '../helpers/log.js';
import { BUCKET, proxiedS3 } from '../helpers/s3.js';
import { tempDir } from '../helpers/temp.js';

const IDLE_MS = 200; // ticks every 50 ms

const { s3, proxy, client } = await proxiedS3(t);


/**
 * A store holding one file per event count given (oldest first), a started Reuploader, and the
 * live upload loop as the re-uploader sees it (IdleSource): a stand-in the test sets, since what
 * is asked of it is exactly the three answers; it also counts the ticks (each asks lastStoredAt).
 */
async function rig(t: Test, events: number[], disk?: Disk, whenFull: 'evict' | 'refuse' = 'evict') {
  const clock = { now: T0 };
  const { log, lines: logs } = memoryLog();
  const dlqRegistry = new Registry();
  const metrics = createDlqMetrics(dlqRegistry);
  const dir = tempDir(t, 'dlq');
  const store = await DlqStore.open({ dir, maxBytes: 1 << 30, maxFiles: whenFull === 'refuse' ? events.length : 1000, whenFull, ttlSeconds: 3600, now: () => clock.now, repair: true, prefix: 'raw', instanceId: 'unit', disk }, metrics, log);
  t.teardown(() => store.close());
  const keys: string[] = [];
  const save = async (n: number) => {
    const b = batch(n);
    await store.save(b.batch, b.gzip);
    keys.push(b.batch.key);
  };
  for (const n of events) await save(n);
  const uploadRegistry = new Registry();
  const uploader = new S3Uploader(client, { bucket: BUCKET, maxAttempts: 1, timeoutMs: 2000 }, createUploadMetrics(uploadRegistry), pino({ level: 'silent' }));
  let wake = () => {};
  const loop: IdleSource & { idle: number | undefined; room: boolean; storedAt: number; ticks: number } = {
    idle: clock.now - IDLE_MS,
    room: true,
    storedAt: 0,
    ticks: 0,
    idleSince: () => loop.idle,
    hasRoom: () => loop.room,
    lastStoredAt: () => {
      loop.ticks++;
      wake();
      return loop.storedAt;
    },
  };
  const reuploader = new Reuploader(store, uploader, loop, IDLE_MS, metrics, log, () => clock.now);
  reuploader.start();
  t.teardown(() => reuploader.stop());
  /** Waits for `n` more ticks. */
  const ticks = async (n: number) => {
    const until = loop.ticks + n;
    while (loop.ticks < until) await new Promise<void>((resolve) => (wake = resolve));
  };
  /** Waits, tick by tick, until `done` holds (failing after 200 ticks, some 10 s). */
  const until = async (done: () => boolean, what: string) => {
    for (let i = 0; i < 200 && !done(); i++) await ticks(1);
    t.ok(done(), what);
  };
  const file = (i: number): QueuedFile | undefined => store.list().find((f) => f.meta.key === keys[i]);
  const reuploaded = async () => (await dlqRegistry.getSingleMetric('dlq_events_reuploaded_total')!.get()).values[0]!.value;
  const putErrors = async (code: string) => (await uploadRegistry.getSingleMetric('s3_put_errors_total')!.get()).values.find((v) => v.labels.code === code)?.value ?? 0;
  return { store, clock, logs, keys, save, loop, reuploader, ticks, until, file, reuploaded, putErrors };
}

const putKeys = () => proxy.puts.map((p) => p.key);

t.test('in idle time every file goes back to S3, oldest first, one at a time', async (t) => {
  const inFlight: number[] = [];
  proxy.decide = () => {
    inFlight.push(proxy.forwarding);
    return 'pass';
  };
  const r = await rig(t, [1, 2, 3]);
  // The success line comes last, after the file left the index and its events were counted.
  await r.until(() => r.logs.filter((l) => l.msg.startsWith('DLQ → RAW success')).length === 3, 'every file stored');
  t.equal(r.store.files, 0, 'the DLQ is empty');
  t.same(putKeys(), r.keys, 'in spill order, each once');
  t.same(inFlight, [0, 0, 0], 'none while another was with S3');
  t.equal(await r.reuploaded(), 6);
  t.same((await s3.objects()).map((o) => o.key).filter((k) => r.keys.includes(k)).sort(), [...r.keys].sort());
});

t.test('not while the loop is busy, nor before it has been idle for the idle time', async (t) => {
  const r = await rig(t, [1]);
  r.loop.idle = undefined; // batches queued or in flight
  await r.ticks(3);
  r.loop.idle = r.clock.now - IDLE_MS + 1;
  await r.ticks(3);
  t.same(proxy.puts, [], 'nothing taken');
  r.clock.now += 1;
  await r.until(() => r.store.files === 0, 'taken once idle for the idle time');
});

t.test('while the DLQ is full (refusing: intake stops), whatever the loop is doing: a kept batch keeps it busy, and must not keep the files from S3', async (t) => {
  const r = await rig(t, [1, 2], undefined, 'refuse');
  t.equal(r.store.full, true, 'DLQ_MAX_FILES files');
  r.loop.idle = undefined; // a batch kept retrying holds its slot
  r.loop.room = false;
  await r.until(() => r.store.files === 1, 'the oldest taken back at once');
  t.equal(r.store.full, false, 'room again: intake resumes');
  await r.ticks(3);
  t.equal(r.store.files, 1, 'no longer full: the loop\'s rules again');
});

t.test('beside live traffic: while a live upload was stored in the last 5 s and the live queue has room', async (t) => {
  const r = await rig(t, [1, 2]);
  r.loop.idle = undefined;
  r.loop.storedAt = r.clock.now;
  r.loop.room = false;
  await r.ticks(3);
  t.same(proxy.puts, [], 'not while live batches need every slot');
  r.loop.room = true;
  await r.until(() => r.store.files === 0, 'both go beside the live uploads');
  await r.save(3);
  r.clock.now += 5001;
  await r.ticks(3);
  t.equal(r.store.files, 1, 'the last live success is too old: waits for idle time');
  t.equal(proxy.puts.length, 2);
});

t.test('a refused file backs off; the pause holds S3 back, then the files behind it go first; its own backoff doubles', async (t) => {
  const r = await rig(t, [1, 2]);
  proxy.decide = ({ key }) => (key === r.keys[0] ? { status: 403, code: 'AccessDenied' } : 'pass');
  await r.until(() => r.file(0)!.failures === 1, 'the oldest failed once');
  t.match(r.logs.find((l) => l.msg === 'DLQ re-upload failed; file kept'), { level: 40, key: r.keys[0], backoffMs: 1000, fileBackoffMs: 1000 });
  await r.ticks(3);
  t.same(putKeys(), [r.keys[0]], 'nothing during the pause (jittered: at least half of 1 s)');
  const retryAt = r.file(0)!.retryAt;
  t.ok(retryAt >= T0 + 1000 && retryAt < T0 + 2000, `the file itself waits from the end of the pause: ${retryAt - T0} ms`);
  r.clock.now = T0 + 1000;
  await r.until(() => r.file(1) === undefined, 'the file behind it is stored');
  await r.ticks(3);
  t.same(putKeys(), [r.keys[0], r.keys[1]], 'the refused file still waits');
  r.clock.now = T0 + 2000;
  await r.until(() => r.file(0)!.failures === 2, 'tried again once its backoff ended');
  t.same(r.logs.filter((l) => l.msg === 'DLQ re-upload failed; file kept').map((l) => l.fileBackoffMs), [1000, 2000]);
  t.equal(r.store.files, 1, 'kept');
});

t.test('while S3 fails the pause doubles; a live upload stored meanwhile ends it at once', async (t) => {
  const r = await rig(t, [1, 1, 1]);
  proxy.decide = () => ({ status: 500, code: 'InternalError' });
  await r.until(() => r.file(0)!.failures === 1, 'the first failed');
  r.clock.now = T0 + 1000;
  await r.until(() => r.file(1)!.failures === 1, 'after the pause, the next failed');
  t.same(r.logs.filter((l) => l.msg === 'DLQ re-upload failed; file kept').map((l) => l.backoffMs), [1000, 2000]);
  proxy.decide = () => 'pass';
  await r.ticks(3);
  t.equal(proxy.puts.length, 2, 'in the pause');
  r.loop.storedAt = r.clock.now; // S3 took a live batch: it is reachable again
  await r.until(() => r.file(2) === undefined, 'the next file goes at once, the clock unchanged');
  t.equal(r.store.files, 2, 'the two that failed still back off on their own');
});

t.test('a file that cannot be read backs off alone, logged with its code; the files behind it go ahead at once', async (t) => {
  let failing = '';
  // EIO on reading one file cannot be produced on a healthy disk: injected through the disk seam.
  const open = (async (...args: Parameters<typeof fs.open>) => {
    if (failing !== '' && String(args[0]).endsWith(failing)) throw Object.assign(new Error('EIO: i/o error, open'), { code: 'EIO' });
    return fs.open(...args);
  }) as typeof fs.open;
  const r = await rig(t, [1, 2], new Disk({ ...fs, open }));
  failing = r.file(0)!.name; // set before the first tick, 50 ms after start
  await r.until(() => r.file(1) === undefined, 'the second file stored, the clock unchanged');
  const first = r.file(0)!;
  t.equal(first.failures, 1);
  t.ok(first.retryAt >= T0 + 500 && first.retryAt < T0 + 1000, 'half to all of 1 s');
  t.match(r.logs.find((l) => l.level === 40 && l.file === first.name), { code: 'EIO', backoffMs: 1000, err: { code: 'EIO' }, msg: /^DLQ file could not be read; it backs off \(backoffMs\), other files go ahead/ });
  t.same(putKeys(), [r.keys[1]]);
});

t.test('stop() aborts the re-upload in flight, keeps its file, and returns once it is let go', async (t) => {
  let seen = () => {};
  const put = new Promise<void>((resolve) => (seen = resolve));
  proxy.decide = () => {
    seen();
    return 'stall';
  };
  const r = await rig(t, [2]);
  await put;
  t.ok(r.file(0)!.busy, 'busy while with S3');
  await r.reuploader.stop();
  const file = r.file(0)!;
  t.notOk(file.busy, 'let go before stop() returned');
  t.equal(file.failures, 0, 'an abort is no failure: no backoff');
  t.equal(r.store.files, 1);
  t.equal(await r.putErrors('Aborted'), 1, 'counted as an abort, not an S3 error');
  t.notOk(r.logs.some((l) => l.msg === 'DLQ re-upload failed; file kept'));
  r.reuploader.abort(); // idempotent
});
