// The start-up S3 preflight: one PUT of `<prefix>/_preflight` with the object settings, true and
// an info line once S3 took it; false and one error line naming the code, the place and what to
// check when S3 refused it or did not answer in time; false and no line when shutdown aborted it.
// A real S3-compatible server, with the fault proxy in front for refusals and silence.
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { preflightS3, type PreflightOptions } from '../../src/upload/preflight.js';
import { createS3Client } from '../../src/upload/s3.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { BUCKET, startS3 } from '../helpers/s3.js';
import type { LogLine } from '../helpers/server.js';

const OPTIONS: PreflightOptions = { bucket: BUCKET, prefix: 'events/raw', object: { sse: undefined, sseKmsKeyId: undefined, storageClass: undefined }, timeoutMs: 5000, instanceId: 'i-7', version: '1.2.3' };

function logger(): { log: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  return { log: pino({ level: 'info', formatters: { level: (label) => ({ level: label }) } }, { write: (text: string) => lines.push(JSON.parse(text) as LogLine) }), lines };
}

function client(t: Test, endpoint: string) {
  const c = createS3Client({ endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
  t.teardown(() => c.destroy());
  return c;
}

t.test('writes the marker under the prefix, saying who wrote it and when; true and an info line', async (t) => {
  const s3 = await startS3(t);
  const { log, lines } = logger();
  const before = Date.now();
  t.equal(await preflightS3(client(t, s3.endpoint), OPTIONS, log, new AbortController().signal), true);
  const got = await s3.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'events/raw/_preflight' }));
  const body = await got.Body!.transformToString();
  const [, at] = /^event-ingest 1\.2\.3 preflight by i-7 at (\S+)\n$/.exec(body) ?? [];
  t.ok(at !== undefined, body);
  t.ok(Date.parse(at!) >= before - 1000 && Date.parse(at!) <= Date.now() + 1000, 'the time of the write');
  t.equal(got.ContentType, 'text/plain');
  t.strictSame(lines.map((l) => [l.level, l.msg, l.where]), [['info', 'S3 preflight ok', 's3://test-bucket/events/raw/_preflight']]);
  t.match(lines[0], { bucket: BUCKET, key: 'events/raw/_preflight' });
  t.equal((await s3.objects()).length, 0, 'not a batch: readers skip names starting with _');
});

t.test('sends the encryption and storage class every batch will be sent with', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const { log } = logger();
  const object = { sse: 'aws:kms', sseKmsKeyId: 'alias/events', storageClass: 'STANDARD_IA' } as const;
  await preflightS3(client(t, proxy.endpoint), { ...OPTIONS, object }, log, new AbortController().signal);
  t.equal(proxy.preflights.length, 1);
  t.match(proxy.preflights[0]!.headers, { 'x-amz-server-side-encryption': 'aws:kms', 'x-amz-server-side-encryption-aws-kms-key-id': 'alias/events', 'x-amz-storage-class': 'STANDARD_IA' });
});

t.test('a refusal: false, one error line with the code, the place and what to check', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  proxy.decidePreflight = () => ({ status: 403, code: 'AccessDenied' });
  const { log, lines } = logger();
  t.equal(await preflightS3(client(t, proxy.endpoint), OPTIONS, log, new AbortController().signal), false);
  t.equal(lines.length, 1);
  t.match(lines[0], { level: 'error', code: 'AccessDenied', bucket: BUCKET, key: 'events/raw/_preflight', where: 's3://test-bucket/events/raw/_preflight', err: { message: /AccessDenied/, stack: /\S/ } });
  t.match(lines[0]!.msg, /^S3 preflight failed; serving anyway: batches spill to the DLQ until S3 takes PUTs; check the credentials/);
  t.equal(proxy.preflights.length, 1, 'one attempt: the preflight does not retry');
});

t.test('no answer within the timeout: false, labelled Timeout, naming UPLOAD_TIMEOUT_MS', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  proxy.decidePreflight = () => 'stall';
  const { log, lines } = logger();
  t.equal(await preflightS3(client(t, proxy.endpoint), { ...OPTIONS, timeoutMs: 200 }, log, new AbortController().signal), false);
  t.match(lines, [{ level: 'error', code: 'Timeout', reason: 'no answer within UPLOAD_TIMEOUT_MS (200 ms)', where: 's3://test-bucket/events/raw/_preflight', msg: /^S3 preflight failed; serving anyway/ }]);
});

t.test('aborted by the shutdown: false, and nothing logged (not S3\'s fault)', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  proxy.decidePreflight = () => 'stall';
  const { log, lines } = logger();
  const shutdown = new AbortController();
  const answer = preflightS3(client(t, proxy.endpoint), OPTIONS, log, shutdown.signal);
  while (proxy.preflights.length === 0) await new Promise((resolve) => setImmediate(resolve));
  shutdown.abort();
  t.equal(await answer, false);
  t.strictSame(lines, []);
});
