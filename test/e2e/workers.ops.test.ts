// test:ops: WORKERS=2 under load: many connections, back-pressure, a stalled main thread, and a
// SIGKILL at ACK_LEVEL=disk; METRICS_PORT, a port in use and MAX_CONNECTIONS over 2 workers (all
// moved from workers.test.ts, for npm test's time). test/ingest/workers.test.ts has the threads in process.
// Real server processes on port 0, a real S3 server; every 202 checked in S3. Bounded in requests.
import { existsSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { assertExactlyOnce, audit, AckingClient, serverCounters } from '../harness/zero-loss.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { s3Env, startS3 } from '../helpers/s3.js';
import { idleConnections } from '../helpers/raw.js';
import { eventually, killed, metricValue, type RunningServer, spawnServer, startServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

/** /metrics at `url` (a server's metricsUrl). */
async function scrape(url: string): Promise<string> {
  return (await fetch(url)).text();
}

/** Every http_requests_total series, summed. */
function requestsTotal(page: string): number {
  return [...page.matchAll(/^http_requests_total\{status="\d+"\} (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
}

async function stopCleanly(t: Test, server: RunningServer): Promise<void> {
  t.same(await server.stop('SIGTERM'), { code: 0, signal: null }, 'SIGTERM: exit 0');
  t.match(await server.waitForLog((l) => l.msg === 'shutdown complete'), { level: 'info', unaccountedEvents: 0, droppedEvents: 0 });
}

t.test('many connections over 2 workers: every 202 in S3 exactly once, and /metrics counts every request of every worker', async (t) => {
  const s3 = await startS3(t);
  const server = await startServer(t, { ...s3.env, WORKERS: '2', DLQ_DIR: tempDir(t, 'dlq'), BATCH_MAX_AGE_MS: '200', BATCH_MAX_EVENTS: '500' });
  t.match(server.logs.find((l) => l.msg.startsWith('HTTP front')), { workers: 2, msg: 'HTTP front: threads (WORKERS)' });
  const client = new AckingClient({ url: server.url, concurrency: 32, eventsPerRequest: 10, maxRequests: 1000, padBytes: 50 });
  await client.run();
  t.same([...client.outcomes], [['202', 1000]], 'every request answered 202');
  // The first scrape: nothing but the load's requests has been answered yet.
  const page = await scrape(server.metricsUrl);
  t.equal(requestsTotal(page), client.requests, `http_requests_total sums every worker's answers (${client.requests} requests)`);
  t.equal(metricValue(page, 'http_requests_total', '{status="202"}'), 1000);
  t.equal(metricValue(page, 'ingest_events_accepted_total'), client.acked.size, 'ingest_events_accepted_total too');
  t.equal((await fetch(`${server.url}/healthz`)).status, 200, '/healthz from a worker');
  t.same(await (await fetch(`${server.url}/readyz`)).json(), { status: 'ready' }, '/readyz from a worker');
  await stopCleanly(t, server);
  assertExactlyOnce(t, await audit(client, s3), 'after the load');
});

t.test('ACK_LEVEL=disk over 2 workers: SIGKILL under load, restart: every 202 in S3 exactly once', async (t) => {
  const s3 = await startS3(t);
  // Slow PUTs: the kill finds batches in flight.
  const proxy = await startFaultProxy(t, s3);
  proxy.decide = () => ({ delayMs: 40 });
  const env = {
    ...s3Env(proxy.endpoint),
    WORKERS: '2',
    ACK_LEVEL: 'disk',
    WAL_DIR: tempDir(t, 'wal'),
    DLQ_DIR: tempDir(t, 'dlq'),
    INSTANCE_ID: 'workers',
    BATCH_MAX_AGE_MS: '150',
    BATCH_MAX_EVENTS: '300',
    WAL_SEGMENT_BYTES: '65536',
  };
  const client = new AckingClient({ url: undefined, concurrency: 16, eventsPerRequest: 10, maxRequests: 4000, padBytes: 100 });
  const load = client.run();
  const first = await startServer(t, env);
  client.retarget(first.url);
  await eventually(() => client.acked.size >= 2000, 600);
  client.retarget(undefined);
  await killed(t, first);
  const second = await startServer(t, env);
  t.ok(second.logs.some((l) => l.msg.startsWith('WAL: replaying')), 'the restart replays the killed run');
  client.retarget(second.url);
  const before = client.acked.size;
  await eventually(() => client.acked.size >= before + 500, 600);
  client.stop();
  await load;
  await stopCleanly(t, second);
  t.ok(second.logs.some((l) => l.msg === 'WAL closed: every event settled'));
  assertExactlyOnce(t, await audit(client, s3), 'after a SIGKILL');
});

t.test('METRICS_PORT with 2 workers: /metrics from the main thread on its own port, 404 on the ingest port', async (t) => {
  const s3 = await startS3(t);
  const server = await startServer(t, { ...s3.env, WORKERS: '2', METRICS_PORT: '0', DLQ_DIR: tempDir(t, 'dlq') });
  const metricsPort = server.logs.find((l) => l.msg === 'listening')!.metricsPort as number;
  t.not(metricsPort, server.port);
  for (let i = 0; i < 4; i++) t.equal((await server.post('[{"a":1}]')).status, 202);
  const page = await scrape(`http://127.0.0.1:${metricsPort}/metrics`);
  t.equal(metricValue(page, 'http_requests_total', '{status="202"}'), 4);
  t.equal((await fetch(`${server.url}/metrics`)).status, 404, 'not on the ingest port');
  await stopCleanly(t, server);
});

t.test('a second server with 2 workers on the same port refuses to start, naming the port; the first keeps every request', async (t) => {
  const s3 = await startS3(t);
  const first = await startServer(t, { ...s3.env, WORKERS: '2', DLQ_DIR: tempDir(t, 'dlq-1') });
  const second = spawnServer(t, { ...s3.env, WORKERS: '2', DLQ_DIR: tempDir(t, 'dlq-2'), PORT: String(first.port) });
  t.same(await second.exited, { code: 1, signal: null }, 'exit 1');
  t.match(second.stderr(), `cannot listen on 127.0.0.1:${first.port}: the port is in use`);
  for (let i = 0; i < 20; i++) await first.post('{"n":1}', { 'content-type': 'application/json', connection: 'close' });
  t.equal(await first.metric('ingest_events_accepted_total'), 20, 'the first server took every request');
  await stopCleanly(t, first);
});

t.test('MAX_CONNECTIONS stays a limit of the server: each of 2 workers takes half, the counts are summed', async (t) => {
  const s3 = await startS3(t);
  // /metrics on its own port: a scrape on the ingest port would be one more connection.
  const server = await startServer(t, { ...s3.env, WORKERS: '2', MAX_CONNECTIONS: '6', METRICS_PORT: '0', DLQ_DIR: tempDir(t, 'dlq') });
  const metricsUrl = `http://127.0.0.1:${server.logs.find((l) => l.msg === 'listening')!.metricsPort as number}/metrics`;
  const idle = idleConnections(t, server.port, 20);
  // Connections go to the workers in turn, so each gets more than its 3.
  await eventually(() => idle.closedByServer() === 14);
  t.match(await server.waitForLog((l) => l.msg === 'connection cap reached: closing new connections'), { cap: 3, worker: Number });
  const page = await scrape(metricsUrl);
  t.equal(metricValue(page, 'http_connections_open'), 6);
  t.equal(metricValue(page, 'http_connections_refused_total'), 14);
  idle.destroy();
  await eventually(async () => metricValue(await scrape(metricsUrl), 'http_connections_open') === 0);
  t.equal((await server.post('{}')).status, 202, 'taken again once they went');
  await stopCleanly(t, server);
});

t.test('back-pressure across workers: a tiny channel and a slow S3 give 503 queue_full, and every 202 ends in S3', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  proxy.decide = () => ({ delayMs: 200 });
  const server = await startServer(t, {
    ...s3Env(proxy.endpoint),
    WORKERS: '2',
    DLQ_DIR: tempDir(t, 'dlq'),
    CHANNEL_MAX_EVENTS: '20',
    BATCH_MAX_EVENTS: '20',
    BATCH_MAX_AGE_MS: '50',
    UPLOAD_CONCURRENCY: '1',
    UPLOAD_QUEUE_MAX_BATCHES: '1',
  });
  const client = new AckingClient({ url: server.url, concurrency: 16, eventsPerRequest: 5, maxRequests: 600 });
  await client.run();
  const refused = client.outcomes.get('503 queue_full') ?? 0;
  t.ok(refused > 0, `some requests refused with 503 queue_full (${refused})`);
  t.ok(client.acked.size > 0, `some accepted (${client.acked.size} events)`);
  t.same([...client.outcomes.keys()].sort(), ['202', '503 queue_full'], 'nothing but 202 and 503 queue_full');
  const page = await scrape(server.metricsUrl);
  t.equal(metricValue(page, 'http_requests_rejected_queue_full_total'), refused, 'http_requests_rejected_queue_full_total sums both workers');
  t.equal(serverCounters(page).accepted, client.acked.size, 'ingest_events_accepted_total: the 202s of both');
  await stopCleanly(t, server);
  assertExactlyOnce(t, await audit(client, s3), 'after back-pressure');
});

t.test('a stalled main thread: bodies waiting between the threads stay within MAX_BODIES_IN_FLIGHT_BYTES, the rest are refused at once', async (t) => {
  // A main thread that stops serving its event loop while the workers go on (a long synchronous
  // task, a GC pause) cannot be made to happen on demand: a preload, in the main thread only,
  // blocks it on SIGUSR2 until the test creates a file. The fault is injected; the rest is real.
  const dir = tempDir(t, 'stall');
  const stalled = join(dir, 'stalled');
  const resume = join(dir, 'resume');
  const preload = join(dir, 'stall.cjs');
  writeFileSync(
    preload,
    `const { existsSync, writeFileSync } = require('node:fs');
const { isMainThread } = require('node:worker_threads');
if (isMainThread) process.on('SIGUSR2', () => {
  writeFileSync(${JSON.stringify(stalled)}, '');
  const cell = new Int32Array(new SharedArrayBuffer(4));
  while (!existsSync(${JSON.stringify(resume)})) Atomics.wait(cell, 0, 0, 20);
});
`,
  );
  const s3 = await startS3(t);
  // 4 MiB over 2 workers: 2 MiB each, room for two of the ~880 KiB bodies below per worker.
  const server = await startServer(t, { ...s3.env, WORKERS: '2', DLQ_DIR: tempDir(t, 'dlq'), MAX_BODIES_IN_FLIGHT_BYTES: String(4 * 1024 * 1024), NODE_OPTIONS: `--require=${preload}` });
  // The main thread accepts connections: these 12 are opened (and kept alive) before it stalls.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 12 });
  t.teardown(() => agent.destroy());
  const answers: number[] = [];
  const postOn = (body: string): Promise<number> =>
    new Promise((resolve, reject) => {
      const req = http.request(`${server.url}/v1/events`, { method: 'POST', agent, headers: { 'content-type': 'application/x-ndjson', 'content-length': Buffer.byteLength(body) } }, (res) => {
        res.resume();
        res.on('end', () => {
          answers.push(res.statusCode!);
          resolve(res.statusCode!);
        });
      });
      req.on('error', reject);
      req.end(body);
    });
  t.same(await Promise.all(Array.from({ length: 12 }, () => postOn('{}\n'))), Array(12).fill(202), '12 connections open');
  answers.length = 0;
  server.child.kill('SIGUSR2');
  await eventually(() => existsSync(stalled));
  const event = (i: number) => JSON.stringify({ id: i, pad: 'x'.repeat(1100) });
  const sent = Array.from({ length: 12 }, (_, r) => postOn(Array.from({ length: 800 }, (_, i) => event(r * 800 + i)).join('\n')));
  // With the main thread stalled nothing can be accepted: what is answered now is refused by the
  // workers themselves, and at most two bodies per worker wait for the main thread.
  await eventually(() => answers.length >= 8);
  t.ok(answers.every((status) => status === 503), `answered during the stall: 503 only (${answers.join(' ')})`);
  writeFileSync(resume, '');
  const statuses = await Promise.all(sent);
  const accepted = statuses.filter((status) => status === 202).length;
  t.ok(accepted <= 4, `${accepted} accepted once the main thread went on: at most the 4 that could wait`);
  t.equal(statuses.filter((status) => status === 503).length, 12 - accepted, 'the others refused');
  t.same(await server.stop('SIGTERM'), { code: 0, signal: null });
  const events = 12 + accepted * 800;
  t.match(await server.waitForLog((l) => l.msg === 'shutdown complete'), { acceptedEvents: events, storedEvents: events, unaccountedEvents: 0, droppedEvents: 0 });
});
