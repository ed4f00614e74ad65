// Zero-loss scenarios (issue 4): shutdown under load and under S3 faults, a full DLQ (the S3
// outage and intermittent errors, 4 and 5, are in zero-loss.ops.test.ts, run by test:ops). Every
// 202 must end up in S3 exactly once, or be exactly what the server
// counted as dropped. Loopback only; every load is bounded in requests. The servers run in the
// test's process (their shutdown is what SIGTERM begins; signals.test.ts sends real ones).
import { readdirSync } from 'node:fs';
import t, { type Test } from 'tap';
import { assertExactlyOnce, audit, AckingClient, countersOf } from '../harness/zero-loss.js';
import { refusedPort, startFaultProxy } from '../helpers/fault-proxy.js';
import { startInProcess } from '../helpers/in-process.js';
import { type S3Server, s3Env, startS3 } from '../helpers/s3.js';
import { eventually, type Exit, type Served } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

// What a client may see once SIGTERM is sent: an answer given before, a 503 shutting_down, or a closed door.
const AFTER_SIGNAL = new Set(['202', '503 shutting_down', 'ECONNREFUSED', 'ECONNRESET', 'UND_ERR_SOCKET']);

/** Waits for the shutdown to end by itself; fails past `withinMs` (its watchdog ends it later). */
async function exitWithin(t: Test, server: Served, withinMs: number): Promise<Exit> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(resolve, withinMs, 'late')));
  const exit = await Promise.race([server.exited, late]);
  clearTimeout(timer);
  if (exit === 'late') t.fail(`the server did not exit within ${withinMs} ms of the signal`);
  return server.exited;
}

/** A server on the same DLQ directory with S3 healthy: empties what a previous run spilled. */
async function drainDlq(t: Test, s3: S3Server, dlqDir: string): Promise<void> {
  const server = await startInProcess(t, { ...s3.env, DLQ_DIR: dlqDir, DLQ_REUPLOAD_IDLE_MS: '50' });
  await eventually(async () => (await countersOf(server)).dlqEvents === 0, 600);
  await server.stop();
}

t.test('1. SIGTERM in the middle of a steady load', async (t) => {
  const s3 = await startS3(t);
  const dlqDir = tempDir(t, 'dlq');
  const server = await startInProcess(t, { ...s3.env, DLQ_DIR: dlqDir, BATCH_MAX_AGE_MS: '200', BATCH_MAX_EVENTS: '500' });
  const client = new AckingClient({ url: server.url, concurrency: 8, eventsPerRequest: 10, maxRequests: 20_000, padBytes: 200 });
  const load = client.run();
  await eventually(() => client.acked.size >= 3000);
  client.markSignal();
  server.signal('SIGTERM');
  const exit = await exitWithin(t, server, 30_000);
  await eventually(() => (client.outcomesAfterMark.get('ECONNREFUSED') ?? 0) > 0);
  client.stop();
  await load;
  t.same(exit, { code: 0, signal: null }, 'exit 0');
  const unexpectedOutcomes = [...client.outcomesAfterMark.keys()].filter((o) => !AFTER_SIGNAL.has(o));
  t.same(unexpectedOutcomes, [], `after the signal only 202, 503 shutting_down or a closed connection: ${JSON.stringify([...client.outcomesAfterMark])}`);
  const summary = await server.waitForLog((l) => l.msg === 'shutdown complete');
  t.match(summary, { level: 'info', unaccountedEvents: 0, droppedEvents: 0 });
  t.ok((summary.acceptedEvents as number) >= client.acked.size, 'the server accepted at least what the client saw acknowledged');
  if (readdirSync(dlqDir).some((n) => n.endsWith('.jsonl.gz'))) await drainDlq(t, s3, dlqDir);
  assertExactlyOnce(t, await audit(client, s3), 'after shutdown');
});

for (const fault of ['refuses connections', 'accepts connections and never answers'] as const) {
  t.test(`${fault === 'refuses connections' ? '2' : '3'}. SIGTERM while S3 ${fault}: out by the deadline, all in the DLQ, then all in S3`, async (t) => {
    const s3 = await startS3(t);
    const dlqDir = tempDir(t, 'dlq');
    const port = await refusedPort();
    const stalling = fault === 'refuses connections' ? undefined : await startFaultProxy(t, s3, port);
    if (stalling) stalling.decide = () => 'stall';
    const server = await startInProcess(t, {
      ...s3Env(`http://127.0.0.1:${port}`),
      DLQ_DIR: dlqDir,
      BATCH_MAX_AGE_MS: '100',
      BATCH_MAX_EVENTS: '100',
      UPLOAD_MAX_ATTEMPTS: '10',
      // Longer than the shutdown deadline: uploads in flight must be cut there, not time out.
      UPLOAD_TIMEOUT_MS: '60000',
      SHUTDOWN_TIMEOUT_MS: '1500',
      DLQ_REUPLOAD_IDLE_MS: '3600000',
    });
    const client = new AckingClient({ url: server.url, concurrency: 4, eventsPerRequest: 5, maxRequests: 300 });
    await client.run();
    t.equal(client.acked.size, 1500);
    server.signal('SIGTERM');
    const exit = await exitWithin(t, server, 1500 + 8000);
    t.same(exit, { code: 0, signal: null });
    const summary = await server.waitForLog((l) => l.msg === 'shutdown complete');
    t.match(summary, { uploadedInTime: false, acceptedEvents: 1500, storedEvents: 0, spilledEvents: 1500, unaccountedEvents: 0 });
    t.ok(server.logs.some((l) => l.msg.startsWith('shutdown deadline: aborting uploads in flight')));
    const onDisk = await audit(client, s3, dlqDir);
    t.equal(onDisk.inDlq, 1500, 'everything is in the DLQ');
    assertExactlyOnce(t, onDisk, 'in the DLQ');

    if (stalling) stalling.decide = () => 'pass';
    else await startFaultProxy(t, s3, port); // S3 is back at the same address
    const back = await startInProcess(t, { ...s3Env(`http://127.0.0.1:${port}`), DLQ_DIR: dlqDir, DLQ_REUPLOAD_IDLE_MS: '50' });
    await eventually(async () => (await countersOf(back)).dlqEvents === 0, 600);
    const inS3 = await audit(client, s3, dlqDir);
    t.equal(inS3.inS3, 1500);
    t.equal(inS3.inDlq, 0);
    assertExactlyOnce(t, inS3, 'after restart');
  });
}

t.test('a second signal during shutdown brings the deadline forward and loses nothing', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  proxy.decide = () => 'stall';
  const dlqDir = tempDir(t, 'dlq');
  const server = await startInProcess(t, { ...s3Env(proxy.endpoint), DLQ_DIR: dlqDir, BATCH_MAX_AGE_MS: '100', UPLOAD_TIMEOUT_MS: '60000', SHUTDOWN_TIMEOUT_MS: '600000' });
  const client = new AckingClient({ url: server.url, concurrency: 2, eventsPerRequest: 10, maxRequests: 50 });
  await client.run();
  server.signal('SIGTERM');
  await server.waitForLog((l) => l.msg.startsWith('shutdown: no longer accepting'));
  server.signal('SIGINT');
  const exit = await exitWithin(t, server, 15_000); // far sooner than the 600 s deadline
  t.same(exit, { code: 0, signal: null });
  t.ok(server.logs.some((l) => l.msg === 'shutdown: second signal, spilling to the DLQ now'));
  t.match(await server.waitForLog((l) => l.msg === 'shutdown complete'), { spilledEvents: 500, unaccountedEvents: 0 });
  proxy.decide = () => 'pass';
  await drainDlq(t, s3, dlqDir);
  assertExactlyOnce(t, await audit(client, s3), 'after restart');
});

t.test('6. a full DLQ: exactly what dlq_events_dropped_total says is lost, each eviction logged', async (t) => {
  const s3 = await startS3(t);
  const port = await refusedPort();
  const dlqDir = tempDir(t, 'dlq');
  const server = await startInProcess(t, {
    ...s3Env(`http://127.0.0.1:${port}`),
    DLQ_DIR: dlqDir,
    DLQ_MAX_FILES: '5',
    BATCH_MAX_EVENTS: '10',
    BATCH_MAX_AGE_MS: '50',
    UPLOAD_MAX_ATTEMPTS: '1',
  });
  const client = new AckingClient({ url: server.url, concurrency: 2, eventsPerRequest: 10, maxRequests: 30 });
  await client.run();
  // A spill is counted once its file is written, before the eviction it causes is done: wait for
  // that too (the DLQ back at its cap) before reading what was dropped.
  await eventually(async () => (await countersOf(server)).spilled === 300 && (await server.metric('dlq_files_current')) <= 5);
  const dropped = await server.metric('dlq_events_dropped_total', '{reason="capacity"}');
  const evictions = server.logs.filter((l) => l.msg.startsWith('DLQ capacity → removed='));
  t.ok(dropped >= 200, `${dropped} events evicted`);
  t.equal(evictions.reduce((n, l) => n + (l.events as number), 0), dropped, 'the log lines name files holding exactly the dropped events');
  await startFaultProxy(t, s3, port);
  await eventually(async () => (await countersOf(server)).dlqEvents === 0, 600);
  const report = await audit(client, s3);
  t.equal(report.missing.length, dropped, 'missing = dlq_events_dropped_total');
  t.same(report.duplicated, []);
  t.same(report.unexpected, []);
});
