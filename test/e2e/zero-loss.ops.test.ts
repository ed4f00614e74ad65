// Zero-loss scenarios 4 and 5 (test:ops: the longest two, moved from zero-loss.test.ts for npm
// test's time): an S3 outage in the middle of a load and intermittent S3 errors. Every 202 must
// end up in S3 exactly once. Loopback only; every load is bounded in requests; the servers run in
// the test's process.
import t from 'tap';
import { assertExactlyOnce, audit, AckingClient, countersOf } from '../harness/zero-loss.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { startInProcess } from '../helpers/in-process.js';
import { s3Env, startS3 } from '../helpers/s3.js';
import { eventually } from '../helpers/server.js';

t.test('4. an S3 outage in the middle of a load, then recovery, without restart', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  let down = false;
  proxy.decide = () => (down ? { status: 503, code: 'SlowDown' } : 'pass');
  const server = await startInProcess(t, { ...s3Env(proxy.endpoint), BATCH_MAX_EVENTS: '50', BATCH_MAX_AGE_MS: '50', UPLOAD_MAX_ATTEMPTS: '2', DLQ_REUPLOAD_IDLE_MS: '200' });
  const client = new AckingClient({ url: server.url, concurrency: 4, eventsPerRequest: 10, maxRequests: 20_000 });
  const load = client.run();
  await eventually(() => client.requests >= 100);
  down = true;
  await eventually(async () => (await countersOf(server)).spilled >= 100);
  down = false;
  // The load goes on while the DLQ is re-uploaded, then ends.
  const back = client.requests;
  await eventually(() => client.requests >= back + 300, 600);
  client.stop();
  await load;
  await eventually(async () => {
    const m = await countersOf(server);
    return m.dlqEvents === 0 && m.stored + m.reuploaded === client.acked.size;
  }, 600);
  const m = await countersOf(server);
  t.equal(m.accepted, client.acked.size, 'server counters: accepted = acknowledged');
  t.equal(m.dropped, 0);
  assertExactlyOnce(t, await audit(client, s3), 'after recovery');
});

t.test('5. S3 answering intermittent 500 and 503 SlowDown: no loss, no duplicate objects', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  let puts = 0;
  // Two PUTs in five fail, alternating 500 and 503: deterministic, and some batches fail every attempt.
  proxy.decide = () => [{ status: 500, code: 'InternalError' }, 'pass', { status: 503, code: 'SlowDown' }, 'pass', 'pass'][puts++ % 5] as ReturnType<typeof proxy.decide>;
  const server = await startInProcess(t, { ...s3Env(proxy.endpoint), BATCH_MAX_EVENTS: '20', BATCH_MAX_AGE_MS: '50', UPLOAD_MAX_ATTEMPTS: '2', DLQ_REUPLOAD_IDLE_MS: '100' });
  const client = new AckingClient({ url: server.url, concurrency: 4, eventsPerRequest: 5, maxRequests: 200 });
  await client.run();
  await eventually(async () => {
    const m = await countersOf(server);
    return m.dlqEvents === 0 && m.stored + m.reuploaded === client.acked.size;
  }, 600);
  const report = await audit(client, s3);
  assertExactlyOnce(t, report, 'intermittent errors');
  const keys = new Set(proxy.puts.filter((p) => p.fault === 'pass').map((p) => p.key));
  t.equal(report.objects, keys.size, 'one object per batch key, however often it was PUT');
  t.ok((await server.metric('s3_put_errors_total', '{code="SlowDown"}')) > 0);
  t.ok((await server.metric('s3_put_errors_total', '{code="InternalError"}')) > 0);
});
