// WORKERS > 1: the HTTP front on worker threads, the pipeline on the main thread. Real server
// processes on port 0, a real S3 server (behind a real slow or stalling proxy where the test
// needs one), real signals; every 202 checked in S3. Bounded in requests; no timing assertions.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { assertExactlyOnce, audit, AckingClient } from '../harness/zero-loss.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { s3Env, startS3 } from '../helpers/s3.js';
import { eventually, type RunningServer, startServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

// What a client may see once SIGTERM is sent: an answer given before, a 503 shutting_down, or a closed door.
const AFTER_SIGNAL = new Set(['202', '503 shutting_down', 'ECONNREFUSED', 'ECONNRESET', 'UND_ERR_SOCKET']);

async function stopCleanly(t: Test, server: RunningServer): Promise<void> {
  t.same(await server.stop('SIGTERM'), { code: 0, signal: null }, 'SIGTERM: exit 0');
  t.match(await server.waitForLog((l) => l.msg === 'shutdown complete'), { level: 'info', unaccountedEvents: 0, droppedEvents: 0 });
}

t.test('SIGTERM in the middle of a load over 2 workers: exit 0, only 202, 503 shutting_down or a closed door after it, zero loss', async (t) => {
  const s3 = await startS3(t);
  const server = await startServer(t, { ...s3.env, WORKERS: '2', DLQ_DIR: tempDir(t, 'dlq'), BATCH_MAX_AGE_MS: '200', BATCH_MAX_EVENTS: '500' });
  const client = new AckingClient({ url: server.url, concurrency: 16, eventsPerRequest: 10, maxRequests: 20_000, padBytes: 100 });
  const load = client.run();
  await eventually(() => client.acked.size >= 3000, 600);
  client.markSignal();
  server.child.kill('SIGTERM');
  const exit = await server.exited;
  client.stop();
  await load;
  t.same(exit, { code: 0, signal: null }, 'exit 0');
  const unexpected = [...client.outcomesAfterMark.keys()].filter((o) => !AFTER_SIGNAL.has(o));
  t.same(unexpected, [], `after the signal: ${JSON.stringify([...client.outcomesAfterMark])}`);
  const summary = await server.waitForLog((l) => l.msg === 'shutdown complete');
  t.match(summary, { level: 'info', unaccountedEvents: 0, droppedEvents: 0, spilledEvents: 0 });
  t.ok((summary.acceptedEvents as number) >= client.acked.size, 'the server accepted at least what the client saw acknowledged');
  assertExactlyOnce(t, await audit(client, s3), 'after SIGTERM');
});

t.test('during the shutdown every worker answers 503 shutting_down and /readyz 503; what was acknowledged is stored', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  proxy.decide = () => 'stall';
  const server = await startServer(t, { ...s3Env(proxy.endpoint), WORKERS: '2', DLQ_DIR: tempDir(t, 'dlq'), BATCH_MAX_AGE_MS: '50', UPLOAD_TIMEOUT_MS: '60000' });
  const client = new AckingClient({ url: server.url, concurrency: 4, eventsPerRequest: 5, maxRequests: 40 });
  await client.run();
  t.equal(client.acked.size, 200);
  server.child.kill('SIGTERM');
  await server.waitForLog((l) => l.msg.startsWith('shutdown: no longer accepting'));
  // New connections go to each worker in turn: four of each kind reach both.
  for (let i = 0; i < 4; i++) {
    const ready = await fetch(`${server.url}/readyz`, { headers: { connection: 'close' } });
    t.same([ready.status, ((await ready.json()) as { error: string }).error], [503, 'shutting_down'], '/readyz');
    const answer = await server.post('[{"late":true}]', { 'content-type': 'application/json', connection: 'close' });
    t.same([answer.status, answer.json.error], [503, 'shutting_down'], 'POST /v1/events');
  }
  proxy.release();
  proxy.decide = () => 'pass';
  t.same(await server.exited, { code: 0, signal: null }, 'exit 0 once S3 answers');
  t.match(await server.waitForLog((l) => l.msg === 'shutdown complete'), { uploadedInTime: true, acceptedEvents: 200, storedEvents: 200, unaccountedEvents: 0 });
  assertExactlyOnce(t, await audit(client, s3), 'after the shutdown');
});

t.test('ACK_LEVEL=s3 over 2 workers: the 202 comes once the batch is in S3', async (t) => {
  const s3 = await startS3(t);
  const server = await startServer(t, { ...s3.env, WORKERS: '2', ACK_LEVEL: 's3', DLQ_DIR: tempDir(t, 'dlq'), BATCH_MAX_AGE_MS: '50' });
  for (let i = 0; i < 4; i++) {
    const answer = await server.post(`[{"n":${i}},{"n":${i}}]`, { 'content-type': 'application/json', connection: 'close' });
    t.same([answer.status, answer.json], [202, { accepted: 2, stored: 's3' }]);
  }
  t.equal((await s3.objects()).flatMap((o) => o.records).length, 8, 'all in S3 when answered');
  await stopCleanly(t, server);
});

t.test('a worker thread that crashes under load: the server logs it fatal, shuts down in order and exits 1, and every 202 is in S3', async (t) => {
  // A bug in a worker thread cannot be produced for real without one: a preload, in worker 0
  // only, throws from a timer once the test creates a file. The rest is real.
  const dir = tempDir(t, 'crash');
  const trigger = join(dir, 'crash');
  const preload = join(dir, 'crash.cjs');
  writeFileSync(
    preload,
    `const { existsSync } = require('node:fs');
const { isMainThread, workerData } = require('node:worker_threads');
if (!isMainThread && workerData.index === 0) {
  const timer = setInterval(() => {
    if (!existsSync(${JSON.stringify(trigger)})) return;
    clearInterval(timer);
    throw new Error('injected bug in worker 0');
  }, 20);
}
`,
  );
  const s3 = await startS3(t);
  const server = await startServer(t, { ...s3.env, WORKERS: '2', DLQ_DIR: tempDir(t, 'dlq'), BATCH_MAX_AGE_MS: '200', BATCH_MAX_EVENTS: '500', NODE_OPTIONS: `--require=${preload}` });
  const client = new AckingClient({ url: server.url, concurrency: 16, eventsPerRequest: 10, maxRequests: 20_000, padBytes: 100 });
  const load = client.run();
  await eventually(() => client.acked.size >= 2000, 600);
  writeFileSync(trigger, '');
  const exit = await server.exited;
  client.stop();
  await load;
  t.same(exit, { code: 1, signal: null }, 'exit 1, not an abort');
  t.match(server.logs.find((l) => l.level === 'fatal'), { msg: 'worker thread crashed: shutting down', worker: 0, err: /injected bug in worker 0/ });
  t.match(await server.waitForLog((l) => l.msg === 'shutdown complete'), { unaccountedEvents: 0, droppedEvents: 0 });
  assertExactlyOnce(t, await audit(client, s3), 'after the crash');
});
