// The three ack levels, each through a pipeline built by the one wiring point (src/wiring.ts), in
// this process, against a real S3-compatible server and a real write-ahead log on disk: when the
// answer comes, what it says, and that a restart on the same WAL sends what was not settled.
import { S3Client } from '@aws-sdk/client-s3';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import t, { type Test } from 'tap';
import { isReceipt, type Outcome } from '../src/acks.js';
import type { AckLevel } from '../src/config.js';
import { createUploadMetrics } from '../src/metrics/upload.js';
import { createWalMetrics } from '../src/metrics/wal.js';
import type { Spill } from '../src/upload/loop.js';
import { S3Uploader } from '../src/upload/s3.js';
import { type RunningPipeline, startPipeline } from '../src/wiring.js';
import { entry, pipelineOptions } from './helpers/pipeline.js';
import { startFaultProxy } from './helpers/fault-proxy.js';
import { BUCKET, type S3Server, startS3 } from './helpers/s3.js';
import { eventually } from './helpers/server.js';
import { tempDir } from './helpers/temp.js';

const log = pino({ level: 'silent' });
const never = new Promise<void>(() => {});

const OPTIONS = pipelineOptions(3);

interface Level {
  running: RunningPipeline;
  s3: S3Server;
  /** Outcomes given later, in the order they came. */
  later: Outcome[];
  /** The answer callback to hand to accept(). */
  answer: (outcome: Outcome) => void;
  /** Resolves once `n` later outcomes have come. */
  answered(n: number): Promise<void>;
}

/** `endpoint`: an S3 other than the real one (a closed port: every PUT fails). */
async function start(t: Test, ackLevel: AckLevel, endpoint?: string, walDir = tempDir(t, 'wal'), spill: Spill = { save: () => Promise.resolve(true), full: false }, ackTimeoutMs = 60_000): Promise<Level> {
  const s3 = await startS3(t);
  const client = endpoint === undefined ? s3.client : new S3Client({ endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
  if (client !== s3.client) t.teardown(() => client.destroy());
  const metrics = createUploadMetrics(new Registry());
  const uploader = new S3Uploader(client, { bucket: BUCKET, maxAttempts: 1, timeoutMs: 2000 }, metrics, log);
  const wal = { dir: walDir, maxBytes: 1 << 24, syncIntervalMs: 0, syncBytes: 1 << 20, segmentBytes: 1 << 20, holder: 'unit', metrics: createWalMetrics(new Registry()) };
  const running = await startPipeline({ options: OPTIONS, ackLevel, ackTimeoutMs, wal, fresh: () => true }, { uploader, spill, metrics, log });
  const later: Outcome[] = [];
  let wake = (): void => {};
  return {
    running,
    s3,
    later,
    answer: (outcome) => {
      later.push(outcome);
      wake();
    },
    answered: async (n) => {
      while (later.length < n) await new Promise<void>((resolve) => (wake = resolve));
    },
  };
}

t.test('memory: accepted at once, nothing later; the WAL is not touched', async (t) => {
  const level = await start(t, 'memory');
  t.equal(level.running.wal, undefined, 'no write-ahead log');
  t.equal(level.running.pipeline.accept(entry('{"a":1}'), level.answer), 'accepted');
  t.same(await level.running.pipeline.close(never), { uploadedInTime: true, accepted: 1, stored: 1, spilled: 0, dropped: 0, kept: 0, unaccounted: 0 });
  t.same(level.later, [], 'no later answer');
  t.equal(await level.running.closeWal(), 0);
});

t.test('disk: pending, then accepted once the record is fsynced; the WAL empties once S3 has the batch', async (t) => {
  const level = await start(t, 'disk');
  const { pipeline } = level.running;
  t.equal(pipeline.accept(entry('{"a":1}', '{"a":2}'), level.answer), 'pending', 'not answered on the caller\'s stack');
  await level.answered(1);
  t.same(level.later, ['accepted']);
  t.same(await pipeline.close(never), { uploadedInTime: true, accepted: 2, stored: 2, spilled: 0, dropped: 0, kept: 0, unaccounted: 0 });
  t.equal(await level.running.closeWal(), 0, 'every event settled');
});

t.test('disk: what a run acknowledged and did not settle is sent by the next run on the same WAL', async (t) => {
  const walDir = tempDir(t, 'wal');
  // S3 refuses and the spill never ends (a hung disk): the events are acknowledged, never settled.
  const hung: Spill = { save: () => new Promise(() => {}), full: false };
  const first = await start(t, 'disk', 'http://127.0.0.1:1', walDir, hung);
  for (let i = 0; i < 2; i++) first.running.pipeline.accept(entry(`{"i":${i}}`), first.answer);
  await first.answered(2);
  t.same(first.later, ['accepted', 'accepted']);
  t.equal((await first.running.pipeline.close(Promise.resolve())).unaccounted, 2, 'given up on after the spill grace, as at a crash');
  t.equal(await first.running.closeWal(), 2, 'both stay in the WAL');
  const second = await start(t, 'disk', undefined, walDir);
  t.same(await second.running.pipeline.close(never), { uploadedInTime: true, accepted: 2, stored: 2, spilled: 0, dropped: 0, kept: 0, unaccounted: 0 }, 'replayed and stored');
  t.equal(await second.running.closeWal(), 0);
  const lines = (await second.s3.objects()).flatMap((o) => o.records.map((r) => r.event));
  t.same(lines, [{ i: 0 }, { i: 1 }]);
});

t.test('disk: a batch neither S3 nor the DLQ takes is kept, never dropped: in the WAL at shutdown, sent by the next run', async (t) => {
  const walDir = tempDir(t, 'wal');
  // S3 refuses; the DLQ refuses too (full): the real store's refusal is its own test (test/dlq/store.test.ts).
  let saves = 0;
  const refusing: Spill = { save: async () => (saves++, false), full: false };
  const first = await start(t, 'disk', 'http://127.0.0.1:1', walDir, refusing);
  for (let i = 0; i < 3; i++) first.running.pipeline.accept(entry(`{"k":${i}}`), first.answer);
  await first.answered(3);
  await eventually(() => saves >= 1);
  // The retry every KEEP_UNSPILLED_MS is the upload loop's own test (test/upload/loop.test.ts).
  t.same(await first.running.pipeline.close(Promise.resolve()), { uploadedInTime: false, accepted: 3, stored: 0, spilled: 0, dropped: 0, kept: 3, unaccounted: 0 }, 'kept, not dropped');
  t.equal(await first.running.closeWal(), 3, 'all three stay in the WAL');
  const second = await start(t, 'disk', undefined, walDir);
  t.same(await second.running.pipeline.close(never), { uploadedInTime: true, accepted: 3, stored: 3, spilled: 0, dropped: 0, kept: 0, unaccounted: 0 }, 'replayed and stored');
  t.equal(await second.running.closeWal(), 0);
});

t.test('disk and s3: while the DLQ refuses (full), the pipeline refuses before the channel or the WAL is asked', async (t) => {
  for (const ackLevel of ['disk', 's3'] as const) {
    const level = await start(t, ackLevel, undefined, tempDir(t, 'wal'), { save: () => Promise.resolve(false), full: true });
    const { pipeline } = level.running;
    t.equal(pipeline.admits(), 'dlq_full', `${ackLevel}: admits`);
    t.equal(pipeline.accept(entry('{"a":1}'), level.answer), 'dlq_full', `${ackLevel}: accept`);
    t.same(await pipeline.close(never), { uploadedInTime: true, accepted: 0, stored: 0, spilled: 0, dropped: 0, kept: 0, unaccounted: 0 }, `${ackLevel}: nothing taken`);
    await level.running.closeWal();
  }
});

t.test('s3: pending until the batch holding the events is stored, then stored', async (t) => {
  const level = await start(t, 's3');
  const { pipeline } = level.running;
  t.equal(pipeline.accept(entry('{"a":1}', '{"a":2}', '{"a":3}'), level.answer), 'pending');
  await level.answered(1);
  t.same(level.later, ['stored'], 'a full batch is cut and stored, then the answer comes');
  await pipeline.close(never);
});

t.test('s3: spilled when S3 refuses and the DLQ keeps it; not_stored when neither does', async (t) => {
  let kept = true;
  const level = await start(t, 's3', 'http://127.0.0.1:1', tempDir(t, 'wal'), { save: () => Promise.resolve(kept), full: false });
  const { pipeline } = level.running;
  pipeline.accept(entry('{"a":1}', '{"a":2}', '{"a":3}'), level.answer);
  await level.answered(1);
  kept = false;
  pipeline.accept(entry('{"b":1}', '{"b":2}', '{"b":3}'), level.answer);
  await level.answered(2);
  t.same(level.later, ['spilled', 'not_stored']);
  await pipeline.close(Promise.resolve());
});

t.test('s3: ACK_TIMEOUT_MS passed before the batch settled: answered unconfirmed, once; the settling later answers nothing more', async (t) => {
  // S3 never answers (a stall): the batch settles (spilled) only when close() aborts its PUT, after the deadline.
  const stalled = await startFaultProxy(t, await startS3(t));
  stalled.decide = () => 'stall';
  t.teardown(() => stalled.release());
  const level = await start(t, 's3', stalled.endpoint, tempDir(t, 'wal'), undefined, 50);
  const { pipeline } = level.running;
  t.equal(pipeline.accept(entry('{"a":1}', '{"a":2}', '{"a":3}'), level.answer), 'pending');
  t.equal(pipeline.accept(entry('{"b":1}'), level.answer), 'pending');
  await level.answered(2);
  t.same(level.later, ['unconfirmed', 'unconfirmed'], 'each answered at its deadline');
  // The deadline can come before the PUT leaves (gzip runs on the thread pool): wait for it, so
  // that what settles later is a batch S3 holds without an answer.
  await eventually(() => stalled.puts.length > 0);
  t.equal((await pipeline.close(Promise.resolve())).spilled, 4, 'the events are still spilled: they may be stored, as the answer said');
  t.same(level.later, ['unconfirmed', 'unconfirmed'], 'no second answer');
});

t.test('a closed pipeline refuses at every level, at once', async (t) => {
  for (const ackLevel of ['memory', 'disk', 's3'] as const) {
    const level = await start(t, ackLevel);
    const { pipeline } = level.running;
    await pipeline.close(never);
    t.equal(pipeline.admits(), 'closed', `${ackLevel}: admits`);
    t.equal(pipeline.accept(entry('{"late":1}'), level.answer), 'closed', `${ackLevel}: accept`);
    await level.running.closeWal();
  }
});

t.test('a receipt (202) is accepted, stored or spilled; every other outcome is a refusal', async (t) => {
  const outcomes = ['accepted', 'stored', 'spilled', 'unconfirmed', 'full', 'closed', 'not_stored', 'dlq_full'] as const;
  t.same(outcomes.filter(isReceipt), ['accepted', 'stored', 'spilled']);
});
