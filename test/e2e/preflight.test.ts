// The S3 preflight at start-up: one small PUT where batches go proves credentials, bucket, the
// prefix's permission and the encryption settings; its result is a log line and s3_preflight_ok.
// A failure never stops the server: it serves, and batches spill to the DLQ while S3 refuses. A
// refusal of configuration (a bucket it cannot write) makes /readyz answer 503 with the reason,
// so that a bad revision fails its deployment; an S3 that is down leaves it ready, spilling. The
// servers run in the test's process, but for the one whose shutdown and exit are watched.
import { GetObjectCommand } from '@aws-sdk/client-s3';
import t from 'tap';
import { refusedPort, startFaultProxy } from '../helpers/fault-proxy.js';
import { startInProcess } from '../helpers/in-process.js';
import { BUCKET, s3Env, startS3 } from '../helpers/s3.js';
import { eventually, metricValue, spawnServer } from '../helpers/server.js';

const preflightLine = (l: { msg: string }) => l.msg.startsWith('S3 preflight');

t.test('bucket there and writable: "S3 preflight ok", gauge 1, the marker object under the prefix', async (t) => {
  const s3 = await startS3(t);
  const server = await startInProcess(t, { ...s3Env(s3.endpoint), S3_PREFIX: 'events/raw', INSTANCE_ID: 'task-1' });
  const line = await server.waitForLog(preflightLine);
  t.match(line, { level: 'info', msg: 'S3 preflight ok', where: `s3://${BUCKET}/events/raw/_preflight`, bucket: BUCKET, key: 'events/raw/_preflight' });
  t.equal(await server.metric('s3_preflight_ok'), 1);
  const marker = await s3.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'events/raw/_preflight' }));
  t.match(await marker.Body!.transformToString(), /^event-ingest \S+ preflight by task-1 at \d{4}-/);
  t.same(await s3.objects(), [], 'readers of the events skip it, as Hive-style readers skip names starting with _');
});

/** /readyz's status and body. */
async function readiness(url: string): Promise<[number, Record<string, unknown>]> {
  const res = await fetch(`${url}/readyz`);
  return [res.status, (await res.json()) as Record<string, unknown>];
}

t.test('a bucket it cannot write (NoSuchBucket, a real s3rver): not ready, with the reason; it serves all the same, spilling', async (t) => {
  const s3 = await startS3(t);
  const server = await startInProcess(t, { ...s3Env(s3.endpoint), S3_BUCKET: 'no-such-bucket', BATCH_MAX_AGE_MS: '50', UPLOAD_MAX_ATTEMPTS: '1', DLQ_REUPLOAD_IDLE_MS: '3600000' });
  const line = await server.waitForLog(preflightLine);
  t.match(line, { level: 'error', code: 'NoSuchBucket', bucket: 'no-such-bucket', key: 'raw/_preflight', msg: /^S3 preflight failed: S3 refused it for a reason of configuration, so \/readyz answers 503 until a retry succeeds; check / });
  t.equal(server.logs.filter(preflightLine).length, 1, 'one line');
  t.equal(await server.metric('s3_preflight_ok'), 0);
  const [status, body] = await readiness(server.url);
  t.equal(status, 503, 'not ready: the deployment fails, and rolls back');
  t.match(body, { error: 's3_misconfigured', message: /^S3 refused the preflight PUT of s3:\/\/no-such-bucket\/raw\/_preflight \(NoSuchBucket\): a configuration error .*; not ready until a retry, every 30 s, succeeds$/ });
  t.equal((await fetch(`${server.url}/healthz`)).status, 200, 'alive: not restarted for it');
  t.equal((await server.post('{"id":1}')).status, 202, 'events still accepted');
  await eventually(async () => (await server.metric('dlq_events_spilled_total')) === 1);
});

t.test('AccessDenied (403 on the wire, from the fault proxy): not ready, with the reason', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  proxy.decidePreflight = () => ({ status: 403, code: 'AccessDenied' });
  const server = await startInProcess(t, { ...s3Env(proxy.endpoint), BATCH_MAX_AGE_MS: '50' });
  t.match(await server.waitForLog(preflightLine), { level: 'error', code: 'AccessDenied' });
  const [status, body] = await readiness(server.url);
  t.equal(status, 503);
  t.match(body, { error: 's3_misconfigured', message: /\(AccessDenied\)/ });
  t.equal(proxy.preflights.length, 1, 'one PUT so far: the next in 30 s');
  t.equal((await server.post('{"id":1}')).status, 202, 'accepts');
  await eventually(async () => (await server.metric('s3_events_stored_total')) === 1);
});

t.test('an S3 that is down (connection refused): ready, and the events spill to the DLQ', async (t) => {
  const port = await refusedPort();
  const server = await startInProcess(t, { ...s3Env(`http://127.0.0.1:${port}`), BATCH_MAX_AGE_MS: '50', UPLOAD_MAX_ATTEMPTS: '1', DLQ_REUPLOAD_IDLE_MS: '3600000' });
  t.match(await server.waitForLog(preflightLine), { level: 'error', code: 'ECONNREFUSED', msg: /^S3 preflight failed; serving anyway: batches spill to the DLQ until S3 takes PUTs/ });
  t.equal(await server.metric('s3_preflight_ok'), 0);
  t.same(await readiness(server.url), [200, { status: 'ready' }], 'an outage must not take the fleet out of its load balancer');
  t.equal((await server.post('{"id":1}')).status, 202);
  await eventually(async () => (await server.metric('dlq_events_spilled_total')) === 1);
});

t.test('the preflight PUT carries the encryption and storage class settings, as bucket policies check them', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const server = await startInProcess(t, { ...s3Env(proxy.endpoint), S3_SSE: 'AES256', S3_STORAGE_CLASS: 'STANDARD_IA' });
  await server.waitForLog(preflightLine);
  t.equal(proxy.preflights.length, 1);
  t.equal(proxy.preflights[0]!.headers['x-amz-server-side-encryption'], 'AES256');
  t.equal(proxy.preflights[0]!.headers['x-amz-storage-class'], 'STANDARD_IA');
});

t.test('an S3 that never answers the preflight neither holds up readiness nor shutdown, and is not reported as a failure', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  proxy.decidePreflight = () => 'stall';
  const server = spawnServer(t, { ...s3Env(proxy.endpoint), UPLOAD_TIMEOUT_MS: '600000' });
  const url = `http://127.0.0.1:${(await server.waitForLog((l) => l.msg === 'listening')).port as number}`;
  await eventually(() => proxy.preflights.length === 1);
  t.equal((await fetch(`${url}/readyz`)).status, 200, 'ready while the preflight waits');
  const metricsUrl = `http://127.0.0.1:${(server.logs.find((l) => l.msg === 'listening')!.metricsPort as number)}/metrics`;
  t.equal(metricValue(await (await fetch(metricsUrl)).text(), 's3_preflight_ok'), 0);
  server.child.kill('SIGTERM');
  t.equal((await server.exited).code, 0, 'SIGTERM ends it at once: the preflight is aborted');
  t.notOk(server.logs.some((l) => l.msg.startsWith('S3 preflight')), 'no preflight line: it never ended');
});

t.test('a preflight that outlasts UPLOAD_TIMEOUT_MS fails as Timeout', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  proxy.decidePreflight = () => 'stall';
  const server = await startInProcess(t, { ...s3Env(proxy.endpoint), UPLOAD_TIMEOUT_MS: '300' });
  const line = await server.waitForLog(preflightLine);
  t.match(line, { level: 'error', code: 'Timeout', reason: 'no answer within UPLOAD_TIMEOUT_MS (300 ms)' });
  t.equal(await server.metric('s3_preflight_ok'), 0);
  t.same(await readiness(server.url), [200, { status: 'ready' }], 'transient: ready');
});
