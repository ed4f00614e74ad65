// Signals and exclusivity: SIGHUP shuts down gracefully like SIGTERM (logs in order, summary
// last), and a second server on the same port refuses to start instead of sharing it. Real
// processes, but for the servers whose process is not watched (the first on the port, the
// summary line after evictions), which run in the test's process.
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { audit, AckingClient } from '../harness/zero-loss.js';
import { startInProcess } from '../helpers/in-process.js';
import { s3Env, startS3 } from '../helpers/s3.js';
import { eventually, spawnServer, startServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

t.test('SIGHUP is a graceful shutdown: every 202 reaches S3, logs in order, summary last', async (t) => {
  const s3 = await startS3(t);
  const server = await startServer(t, { ...s3.env, DLQ_DIR: tempDir(t, 'dlq'), BATCH_MAX_AGE_MS: '200', BATCH_MAX_EVENTS: '200' });
  const client = new AckingClient({ url: server.url, concurrency: 4, eventsPerRequest: 5, maxRequests: 2000 });
  const load = client.run();
  await eventually(() => client.acked.size >= 500);
  const exit = await server.stop('SIGHUP');
  client.stop();
  await load;
  t.same(exit, { code: 0, signal: null }, 'exit 0, not killed by the signal');
  const messages = server.logs.map((l) => l.msg);
  const started = messages.indexOf('shutdown: no longer accepting events, uploading what is held');
  t.ok(started >= 0, 'the shutdown began');
  t.equal(server.logs[started]?.signal, 'SIGHUP');
  t.equal(messages.at(-1), 'shutdown complete', 'the summary is the last line, after every other');
  t.match(server.logs.at(-1), { level: 'info', unaccountedEvents: 0, droppedEvents: 0 });
  const report = await audit(client, s3);
  t.same(report.missing.slice(0, 5), [], `no acknowledged event missing (${report.missing.length} of ${report.acked})`);
  t.same(report.duplicated.slice(0, 5), [], 'none stored twice');
});

t.test('a second server on the same port refuses to start, naming the port; the first keeps serving', async (t) => {
  const s3 = await startS3(t);
  const first = await startInProcess(t, s3.env);
  const second = spawnServer(t, { ...s3.env, DLQ_DIR: tempDir(t, 'dlq-2'), PORT: String(first.port) });
  const exit = await second.exited;
  t.same(exit, { code: 1, signal: null }, 'exit 1');
  t.match(second.stderr(), `cannot listen on 127.0.0.1:${first.port}: the port is in use`);
  // Were the port shared, the kernel would spread new connections over both processes.
  for (let i = 0; i < 20; i++) await first.post('{"n":1}', { 'content-type': 'application/json', connection: 'close' });
  t.equal(await first.metric('ingest_events_accepted_total'), 20, 'the first server took every request');
  await first.stop();
});

t.test('a bug while closing the pipeline still spills what is held and writes the summary', async (t) => {
  const s3 = await startS3(t);
  const dlqDir = tempDir(t, 'dlq');
  const fixture = fileURLToPath(new URL('../fixtures/throw-in-shutdown-flush.mjs', import.meta.url));
  const server = await startServer(t, { ...s3.env, DLQ_DIR: dlqDir, BATCH_MAX_AGE_MS: '600000', NODE_OPTIONS: `--import=${fixture}` });
  t.equal((await server.post('[{"id":1},{"id":2},{"id":3}]')).status, 202);
  const exit = await server.stop();
  t.same(exit, { code: 0, signal: null });
  t.ok(server.logs.some((l) => l.msg === 'shutdown: uploading what is held failed; spilling it'), 'the failure is logged');
  t.match(server.logs.at(-1), { msg: 'shutdown complete', acceptedEvents: 3, spilledEvents: 3, unaccountedEvents: 0 });
  t.equal(readdirSync(dlqDir).filter((n) => n.endsWith('.jsonl.gz')).length, 1, 'the batch is in the DLQ');
});

t.test('with EMF on, a reader of stdout that goes away does not end the server', async (t) => {
  const s3 = await startS3(t);
  const server = await startServer(t, { ...s3.env, DLQ_DIR: tempDir(t, 'dlq'), METRICS_EMF: 'true', METRICS_EMF_INTERVAL_MS: '1000', BATCH_MAX_AGE_MS: '600000' });
  t.equal((await server.post('[{"id":1},{"id":2}]')).status, 202);
  server.child.stdout!.destroy();
  // Two EMF intervals with nobody reading: each write fails with EPIPE.
  await new Promise((resolve) => setTimeout(resolve, 2500));
  t.equal(server.child.exitCode, null, 'still running');
  t.equal((await server.post('{"id":3}')).status, 202, 'still serving');
  t.same(await server.stop(), { code: 0, signal: null });
  t.equal((await s3.objects()).flatMap((o) => o.lines).length, 3, 'every event in S3');
});

t.test('DLQ evictions during the shutdown spill show in the summary line, at error', async (t) => {
  const dlqDir = tempDir(t, 'dlq');
  // S3 unreachable and one DLQ file at most: the shutdown spill of three batches evicts two.
  const server = await startInProcess(t, { ...s3Env('http://127.0.0.1:1'), DLQ_DIR: dlqDir, DLQ_MAX_FILES: '1', BATCH_MAX_EVENTS: '1', BATCH_MAX_AGE_MS: '600000', UPLOAD_MAX_ATTEMPTS: '1', SHUTDOWN_TIMEOUT_MS: '1000' });
  for (let i = 0; i < 3; i++) t.equal((await server.post(`{"id":${i}}`)).status, 202);
  await server.stop();
  t.match(server.logs.at(-1), { level: 'error', msg: 'shutdown complete', acceptedEvents: 3, spilledEvents: 3, dlqDroppedEvents: 2, dlqDroppedByReason: { capacity: 2 } });
});
