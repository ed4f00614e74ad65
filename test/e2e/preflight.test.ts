// The S3 preflight at start-up: one small PUT where batches go proves credentials, bucket, the
// prefix's permission and the encryption settings; its result is one log line and s3_preflight_ok.
// A failure never stops the server: it serves, and batches spill to the DLQ while S3 refuses. The
// servers run in the test's process, but for the one whose shutdown and exit are watched.
import { GetObjectCommand } from '@aws-sdk/client-s3';
import t from 'tap';
import { startFaultProxy } from '../helpers/fault-proxy.js';
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

t.test('missing bucket: one clear error line, gauge 0, and the server still serves', async (t) => {
  const s3 = await startS3(t);
  const server = await startInProcess(t, { ...s3Env(s3.endpoint), S3_BUCKET: 'no-such-bucket', BATCH_MAX_AGE_MS: '50', UPLOAD_MAX_ATTEMPTS: '1', DLQ_REUPLOAD_IDLE_MS: '3600000' });
  const line = await server.waitForLog(preflightLine);
  t.match(line, { level: 'error', code: 'NoSuchBucket', bucket: 'no-such-bucket', key: 'raw/_preflight' });
  t.match(line, { code: 'NoSuchBucket', msg: /^S3 preflight failed; serving anyway: batches spill to the DLQ until S3 takes PUTs; check / });
  t.equal(server.logs.filter(preflightLine).length, 1, 'one line');
  t.equal(await server.metric('s3_preflight_ok'), 0);
  t.equal((await fetch(`${server.url}/readyz`)).status, 200, 'ready all the same');
  t.equal((await server.post('{"id":1}')).status, 202);
  await eventually(async () => (await server.metric('dlq_events_spilled_total')) === 1);
});

t.test('wrong credentials (403 InvalidAccessKeyId on the wire): clear line, gauge 0, serving', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  proxy.decidePreflight = () => ({ status: 403, code: 'InvalidAccessKeyId' });
  const server = await startInProcess(t, { ...s3Env(proxy.endpoint), BATCH_MAX_AGE_MS: '50' });
  const line = await server.waitForLog(preflightLine);
  t.match(line, { level: 'error', code: 'InvalidAccessKeyId' });
  t.match(line, { code: 'InvalidAccessKeyId', msg: /^S3 preflight failed/ });
  t.equal(await server.metric('s3_preflight_ok'), 0);
  t.equal(proxy.preflights.length, 1, 'one PUT');
  t.equal((await server.post('{"id":1}')).status, 202, 'accepts');
  await eventually(async () => (await server.metric('s3_events_stored_total')) === 1);
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
  t.equal(metricValue(await (await fetch(`${url}/metrics`)).text(), 's3_preflight_ok'), 0);
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
});
