// The pipeline against a real S3-compatible server: batch work off the request's stack, close()
// with its own tallies, and a spill that fails or rejects never crashing the process.
import { pino } from 'pino';
import { Registry } from 'prom-client';
import t, { type Test } from 'tap';
import { memoryAcks } from '../src/acks.js';
import { createUploadMetrics } from '../src/metrics/upload.js';
import { Pipeline } from '../src/pipeline.js';
import type { Spill } from '../src/upload/loop.js';
import { S3Uploader } from '../src/upload/s3.js';
import { entry, pipelineOptions } from './helpers/pipeline.js';
import { BUCKET, startS3 } from './helpers/s3.js';
import { eventually } from './helpers/server.js';

const log = pino({ level: 'silent' });

async function setup(t: Test, maxEvents: number, spill: Spill, endpoint?: string) {
  const s3 = await startS3(t);
  const { S3Client } = await import('@aws-sdk/client-s3');
  // A closed port for an S3 that refuses: connection errors are real, retried, then spilled.
  const client =
    endpoint === undefined
      ? s3.client
      : new S3Client({ endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
  if (client !== s3.client) t.teardown(() => client.destroy());
  const metrics = createUploadMetrics(new Registry());
  const uploader = new S3Uploader(client, { bucket: BUCKET, maxAttempts: 2, timeoutMs: 2000 }, metrics, log);
  return { s3, pipeline: new Pipeline(pipelineOptions(maxEvents), { uploader, spill, acks: memoryAcks, metrics, log }) };
}

// At ACK_LEVEL=memory the outcome is the push's, returned at once: nothing answers later.
const noLaterAnswer = (): void => {
  throw new Error('no later answer at ACK_LEVEL=memory');
};

const neverSpill: Spill = { save: () => Promise.reject(new Error('no spill expected')), full: false };
const never = new Promise<void>(() => {});

t.test('a push that completes a batch returns before the batch is cut or encoded', async (t) => {
  const { s3, pipeline } = await setup(t, 2, neverSpill);
  t.equal(pipeline.accept(entry('{"a":1}', '{"a":2}'), noLaterAnswer), 'accepted');
  t.equal(pipeline.events, 2, 'still in the channel when accept returns');
  t.equal(pipeline.uploadQueued + pipeline.uploadInFlight, 0, 'nothing submitted on the request stack');
  await eventually(async () => (await s3.objects()).length === 1);
  const summary = await pipeline.close(never);
  t.same(summary, { uploadedInTime: true, accepted: 2, stored: 2, spilled: 0, dropped: 0, kept: 0, unaccounted: 0 });
});

t.test('close() uploads what is held, refuses new events, and is idempotent', async (t) => {
  const { s3, pipeline } = await setup(t, 100, neverSpill);
  for (let i = 0; i < 5; i++) pipeline.accept(entry(`{"i":${i}}`), noLaterAnswer);
  const first = pipeline.close(never);
  t.equal(pipeline.accept(entry('{"late":1}'), noLaterAnswer), 'closed');
  t.equal(pipeline.close(never), first, 'a second close is the first');
  t.same(await first, { uploadedInTime: true, accepted: 5, stored: 5, spilled: 0, dropped: 0, kept: 0, unaccounted: 0 });
  const [object] = await s3.objects();
  t.equal(object?.lines.length, 5);
});

t.test('at the deadline, what S3 did not take is spilled and tallied', async (t) => {
  const spilled: number[] = [];
  const spill: Spill = {
    save: async (batch) => {
      spilled.push(batch.events);
      return true;
    },
    full: false,
  };
  const { pipeline } = await setup(t, 3, spill, 'http://127.0.0.1:1');
  for (let i = 0; i < 7; i++) pipeline.accept(entry(`{"i":${i}}`), noLaterAnswer);
  const summary = await pipeline.close(Promise.resolve());
  t.same(summary, { uploadedInTime: false, accepted: 7, stored: 0, spilled: 7, dropped: 0, kept: 0, unaccounted: 0 });
  t.equal(spilled.reduce((a, b) => a + b, 0), 7);
});

t.test('a spill that fails or rejects counts the batch as dropped and crashes nothing', async (t) => {
  // A DLQ that rejects cannot be produced for real (DlqStore.save never rejects): injected here.
  let calls = 0;
  const spill: Spill = { save: async () => (++calls % 2 === 0 ? false : Promise.reject(new Error('injected spill failure'))), full: false };
  const { pipeline } = await setup(t, 1, spill, 'http://127.0.0.1:1');
  for (let i = 0; i < 4; i++) pipeline.accept(entry(`{"i":${i}}`), noLaterAnswer);
  const summary = await pipeline.close(Promise.resolve());
  t.same(summary, { uploadedInTime: false, accepted: 4, stored: 0, spilled: 0, dropped: 4, kept: 0, unaccounted: 0 });
  t.equal(calls, 4);
});

t.test('after the deadline, a spill that hangs is given up on after its grace: close() still resolves', async (t) => {
  // A disk write that never returns cannot be produced on demand: a spill that never resolves stands in.
  const { pipeline } = await setup(t, 1, { save: () => never as Promise<never>, full: false }, 'http://127.0.0.1:1');
  pipeline.accept(entry('{"i":1}'), noLaterAnswer);
  pipeline.accept(entry('{"i":2}'), noLaterAnswer);
  const summary = await pipeline.close(Promise.resolve());
  t.same(summary, { uploadedInTime: false, accepted: 2, stored: 0, spilled: 0, dropped: 0, kept: 0, unaccounted: 2 }, 'the two events are reported unaccounted, not hidden');
});
