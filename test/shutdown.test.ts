// The ordered shutdown (Shutdown), without the process: stop accepting, close a real pipeline by
// the deadline, then each step in order, each guarded and bounded; one summary line, last; begun
// once, a second begin only hurrying the deadline; the exit code the worst asked for. A real
// S3-compatible server behind the fault proxy, which stalls PUTs where the deadline must come.
// Not here: the watchdog (it fires seconds past every bound) and shutDownOnSignals (process
// signals and exit), which test/e2e/signals.test.ts runs in real processes.
import { pino } from 'pino';
import { Registry } from 'prom-client';
import t, { type Test } from 'tap';
import { memoryAcks } from '../src/acks.js';
import { createUploadMetrics } from '../src/metrics/upload.js';
import { Pipeline } from '../src/pipeline.js';
import { Shutdown, type ShutdownPlan } from '../src/shutdown.js';
import { S3Uploader } from '../src/upload/s3.js';
import { type FaultProxy, startFaultProxy } from './helpers/fault-proxy.js';
import { entry, pipelineOptions } from './helpers/pipeline.js';
import { BUCKET, type S3Server, startS3 } from './helpers/s3.js';
import type { LogLine } from './helpers/server.js';

interface Setup {
  s3: S3Server;
  proxy: FaultProxy;
  pipeline: Pipeline;
  logs: LogLine[];
  /** What happened, in order: `stop`, then each step's name. */
  order: string[];
  plan(more?: Partial<ShutdownPlan>): ShutdownPlan;
}

async function setup(t: Test): Promise<Setup> {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  t.teardown(() => proxy.release());
  const { S3Client } = await import('@aws-sdk/client-s3');
  const client = new S3Client({ endpoint: proxy.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }, maxAttempts: 1 });
  t.teardown(() => client.destroy());
  const metrics = createUploadMetrics(new Registry());
  const uploader = new S3Uploader(client, { bucket: BUCKET, maxAttempts: 1, timeoutMs: 5000 }, metrics, pino({ level: 'silent' }));
  const logs: LogLine[] = [];
  const log = pino({ formatters: { level: (label) => ({ level: label }) } }, { write: (text: string) => logs.push(JSON.parse(text) as LogLine) });
  const pipeline = new Pipeline(pipelineOptions(100), { uploader, spill: { save: () => Promise.resolve(true), full: false }, acks: memoryAcks, metrics, log: pino({ level: 'silent' }) });
  const order: string[] = [];
  const plan = (more: Partial<ShutdownPlan> = {}): ShutdownPlan => ({
    log,
    timeoutMs: 60_000,
    stopAccepting: () => order.push('stop'),
    pipeline,
    dlqDropped: () => ({}),
    steps: [],
    ...more,
  });
  return { s3, proxy, pipeline, logs, order, plan };
}

const noAnswer = (): void => {};

t.test('stops accepting, closes the pipeline (uploading what it holds), then runs each step in order; the summary line last', async (t) => {
  const { s3, pipeline, logs, order, plan } = await setup(t);
  for (let i = 0; i < 3; i++) pipeline.accept(entry(`{"i":${i}}`), noAnswer);
  const step = (name: string) => [name, async () => {
    order.push(name);
    if (name === 'first') {
      t.equal(pipeline.accept(entry('{"late":1}'), noAnswer), 'closed', 'the pipeline is closed before the first step');
      t.equal((await s3.objects()).flatMap((o) => o.lines).length, 3, 'and what it held is in S3');
    }
  }] as const;
  const shutdown = new Shutdown(plan({ steps: [step('first'), step('second'), step('third')] }));
  shutdown.begin('SIGTERM', 0);
  const { summary, code } = await shutdown.ended;
  t.strictSame(order, ['stop', 'first', 'second', 'third']);
  t.equal(code, 0);
  t.strictSame(summary, { uploadedInTime: true, accepted: 3, stored: 3, spilled: 0, dropped: 0, kept: 0, unaccounted: 0 });
  t.match(logs[0], { level: 'info', msg: 'shutdown: no longer accepting events, uploading what is held', signal: 'SIGTERM', timeoutMs: 60_000 });
  t.strictSame(logs.slice(1), [logs.at(-1)], 'nothing between the first line and the summary when all goes well');
  t.match(logs.at(-1), { level: 'info', msg: 'shutdown complete', uploadedInTime: true, acceptedEvents: 3, storedEvents: 3, spilledEvents: 0, droppedEvents: 0, keptEvents: 0, unaccountedEvents: 0, dlqDroppedEvents: 0, dlqDroppedByReason: {} });
});

t.test('a second begin does not start it again: it brings the deadline forward, what S3 has not taken is spilled', async (t) => {
  const { proxy, pipeline, logs, order, plan } = await setup(t);
  proxy.decide = () => 'stall';
  pipeline.accept(entry('{"a":1}', '{"a":2}'), noAnswer);
  const shutdown = new Shutdown(plan({ steps: [['only', () => order.push('only')]] }));
  shutdown.begin('SIGTERM', 0);
  while (proxy.puts.length === 0) await new Promise((resolve) => setImmediate(resolve));
  shutdown.begin('SIGINT', 0);
  const { summary, code } = await shutdown.ended;
  t.strictSame(order, ['stop', 'only'], 'stopAccepting and each step once');
  t.equal(code, 0);
  t.match(summary, { uploadedInTime: false, accepted: 2, stored: 0, spilled: 2 });
  t.match(logs.find((l) => l.level === 'warn'), { msg: 'shutdown: second signal, spilling to the DLQ now', signal: 'SIGINT' });
  t.equal(logs.filter((l) => l.msg === 'shutdown complete').length, 1, 'one summary');
  shutdown.begin('SIGTERM', 0);
  t.equal(logs.filter((l) => l.msg === 'shutdown complete').length, 1, 'a begin after the end writes no second summary');
});

t.test('the exit code is the worst asked for: a crash at any point makes it 1', async (t) => {
  for (const begins of [[['crash', 1]], [['SIGTERM', 0], ['crash', 1]], [['crash', 1], ['SIGTERM', 0]]] as const) {
    const { plan } = await setup(t);
    const shutdown = new Shutdown(plan());
    for (const [reason, code] of begins) shutdown.begin(reason, code);
    t.equal((await shutdown.ended).code, 1, begins.map(([reason]) => reason).join(', '));
  }
});

t.test('a step that fails or hangs is logged and the next one runs', async (t) => {
  const { order, logs, plan } = await setup(t);
  const shutdown = new Shutdown(
    plan({
      steps: [
        ['throwing', () => {
          throw new Error('injected step failure');
        }],
        ['rejecting', () => Promise.reject(new Error('injected rejection'))],
        ['hanging', () => new Promise(() => {})],
        ['last', () => order.push('last')],
      ],
    }),
  );
  shutdown.begin('SIGTERM', 0);
  const { code } = await shutdown.ended;
  t.strictSame(order, ['stop', 'last']);
  t.equal(code, 0, 'a failed step is not a failed shutdown');
  t.match(logs.filter((l) => l.level === 'error'), [
    { msg: 'shutdown: a step failed, going on', step: 'throwing', err: { message: 'injected step failure' } },
    { msg: 'shutdown: a step failed, going on', step: 'rejecting', err: { message: 'injected rejection' } },
    { msg: 'shutdown: a step did not finish in time, going on', step: 'hanging', timeoutMs: 1000 },
  ]);
  t.equal(logs.at(-1)!.msg, 'shutdown complete');
});

t.test('stopAccepting failing does not stop the shutdown', async (t) => {
  const { logs, plan } = await setup(t);
  const shutdown = new Shutdown(
    plan({
      stopAccepting: () => {
        throw new Error('injected');
      },
    }),
  );
  shutdown.begin('SIGTERM', 0);
  t.equal((await shutdown.ended).code, 0);
  t.match(logs[0], { level: 'error', msg: 'shutdown: a step failed, going on', step: 'stopping intake' });
  t.equal(logs.at(-1)!.msg, 'shutdown complete');
});

t.test('the summary is at error when anything was lost: dropped by the pipeline, or let go by the DLQ', async (t) => {
  const { logs, plan } = await setup(t);
  const shutdown = new Shutdown(plan({ dlqDropped: () => ({ capacity: 2, ttl: 1 }) }));
  shutdown.begin('SIGTERM', 0);
  await shutdown.ended;
  t.match(logs.at(-1), { level: 'error', msg: 'shutdown complete', dlqDroppedEvents: 3, dlqDroppedByReason: { capacity: 2, ttl: 1 } });

  const dropping = await setup(t);
  // The DLQ refuses the spill (DlqStore.save answers false when it cannot write): the batch is dropped.
  const { S3Client } = await import('@aws-sdk/client-s3');
  const refused = new S3Client({ endpoint: 'http://127.0.0.1:1', forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' }, maxAttempts: 1 });
  t.teardown(() => refused.destroy());
  const metrics = createUploadMetrics(new Registry());
  const pipeline = new Pipeline(pipelineOptions(100), { uploader: new S3Uploader(refused, { bucket: BUCKET, maxAttempts: 1, timeoutMs: 2000 }, metrics, pino({ level: 'silent' })), spill: { save: () => Promise.resolve(false), full: false }, acks: memoryAcks, metrics, log: pino({ level: 'silent' }) });
  pipeline.accept(entry('{"x":1}'), noAnswer);
  const lossy = new Shutdown(dropping.plan({ pipeline }));
  lossy.begin('SIGTERM', 0);
  t.match((await lossy.ended).summary, { dropped: 1 });
  t.match(dropping.logs.at(-1), { level: 'error', msg: 'shutdown complete', droppedEvents: 1, dlqDroppedEvents: 0 });
});
