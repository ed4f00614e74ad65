// The S3 preflight: a PUT of `<prefix>/_preflight` with the object settings, reported and logged,
// and tried again every retryMs until S3 takes it. A refusal of configuration (S3 answered 4xx or
// a redirect, the endpoint's name does not resolve) is told apart from a transient failure
// (timeouts, refused connections, 5xx, SlowDown): the server's readiness depends on it. One
// error line per new cause, an info line at the success that ends them, nothing when the shutdown
// aborts it. A real S3-compatible server, with the fault proxy in front for the answers s3rver
// cannot be made to give (AccessDenied, 5xx, SlowDown, a redirect, silence).
import { lookup } from 'node:dns/promises';
import { CreateBucketCommand, GetObjectCommand } from '@aws-sdk/client-s3';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { isConfigurationError, type PreflightFailure, type PreflightOptions, watchS3 } from '../../src/upload/preflight.js';
import { createS3Client } from '../../src/upload/s3.js';
import { refusedPort, startFaultProxy } from '../helpers/fault-proxy.js';
import { BUCKET, startS3 } from '../helpers/s3.js';
import { eventually, type LogLine } from '../helpers/server.js';

const OPTIONS: PreflightOptions = { bucket: BUCKET, prefix: 'events/raw', object: { sse: undefined, sseKmsKeyId: undefined, storageClass: undefined }, timeoutMs: 5000, instanceId: 'i-7', version: '1.2.3', retryMs: 5 };

function logger(): { log: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  return { log: pino({ level: 'info', formatters: { level: (label) => ({ level: label }) } }, { write: (text: string) => lines.push(JSON.parse(text) as LogLine) }), lines };
}

function client(t: Test, endpoint: string) {
  const c = createS3Client({ endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
  t.teardown(() => c.destroy());
  return c;
}

// One S3 server, and the fault proxy in front of it, for the whole file: each test starts from a
// proxy that passes everything and has seen no preflight.
const s3 = await startS3(t);
const proxy = await startFaultProxy(t, s3);
t.beforeEach(() => {
  proxy.decidePreflight = () => 'pass';
  proxy.preflights.length = 0;
});

/** Runs watchS3 until it ends or the test aborts it; every report kept. */
function watch(t: Test, endpoint: string, options: Partial<PreflightOptions> = {}) {
  const { log, lines } = logger();
  const reports: (PreflightFailure | undefined)[] = [];
  const shutdown = new AbortController();
  t.teardown(() => shutdown.abort());
  const ended = watchS3(client(t, endpoint), { ...OPTIONS, ...options }, log, shutdown.signal, (failure) => reports.push(failure));
  return { lines, reports, shutdown, ended };
}

const CONFIGURATION = /^S3 preflight failed: S3 refused it for a reason of configuration, so \/readyz answers 503 until a retry succeeds; check the credentials/;
const TRANSIENT = /^S3 preflight failed; serving anyway: batches spill to the DLQ until S3 takes PUTs; check S3 and the network path to it/;

t.test('writes the marker under the prefix, saying who wrote it and when; one report of success and an info line', async (t) => {
  const before = Date.now();
  const { lines, reports, ended } = watch(t, s3.endpoint);
  await ended;
  t.strictSame(reports, [undefined]);
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
  const object = { sse: 'aws:kms', sseKmsKeyId: 'alias/events', storageClass: 'STANDARD_IA' } as const;
  await watch(t, proxy.endpoint, { object }).ended;
  t.equal(proxy.preflights.length, 1);
  t.match(proxy.preflights[0]!.headers, { 'x-amz-server-side-encryption': 'aws:kms', 'x-amz-server-side-encryption-aws-kms-key-id': 'alias/events', 'x-amz-storage-class': 'STANDARD_IA' });
});

t.test('NoSuchBucket (a real s3rver): a configuration failure, logged once however often retried; the bucket created, the next retry succeeds', async (t) => {
  const { lines, reports, ended } = watch(t, s3.endpoint, { bucket: 'made-later' });
  await eventually(() => reports.length >= 3, 200, 5);
  t.strictSame(reports.slice(0, 3), Array(3).fill({ code: 'NoSuchBucket', configuration: true, where: 's3://made-later/events/raw/_preflight' }), 'retried every retryMs');
  await s3.client.send(new CreateBucketCommand({ Bucket: 'made-later' }));
  await ended;
  t.equal(reports.at(-1), undefined, 'the last report: success');
  t.strictSame(lines.map((l) => [l.level, l.code]), [['error', 'NoSuchBucket'], ['info', undefined]], 'one error line for the cause, one info line when it is gone');
  t.match(lines[0], { code: 'NoSuchBucket', bucket: 'made-later', key: 'events/raw/_preflight', where: 's3://made-later/events/raw/_preflight', retryInMs: 5, err: { message: /bucket/i, stack: /\S/ }, msg: CONFIGURATION });
  t.equal(lines[1]!.msg, 'S3 preflight ok');
});

t.test('wrong credentials (a real s3rver answers 403 InvalidAccessKeyId): a configuration failure', async (t) => {
  const { log, lines } = logger();
  const wrong = createS3Client({ endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'WRONG', secretAccessKey: 'WRONG' } });
  t.teardown(() => wrong.destroy());
  const shutdown = new AbortController();
  let first: PreflightFailure | undefined;
  await watchS3(wrong, OPTIONS, log, shutdown.signal, (failure) => ((first = failure), shutdown.abort()));
  t.match(first, { code: 'InvalidAccessKeyId', configuration: true });
  t.match(lines, [{ level: 'error', code: 'InvalidAccessKeyId', msg: CONFIGURATION }]);
});

t.test('each answer S3 may give, on the wire: refusals of configuration and transient failures told apart', async (t) => {
  const cases: [number, string, boolean][] = [
    [403, 'AccessDenied', true],
    [404, 'NoSuchBucket', true],
    [301, 'PermanentRedirect', true],
    [400, 'AuthorizationHeaderMalformed', true],
    [403, 'SignatureDoesNotMatch', true],
    [503, 'SlowDown', false],
    [500, 'InternalError', false],
    [503, 'ServiceUnavailable', false],
    [400, 'RequestTimeout', false],
  ];
  for (const [status, code, configuration] of cases) {
    proxy.decidePreflight = () => ({ status, code });
    const { lines, reports, shutdown } = watch(t, proxy.endpoint);
    await eventually(() => reports.length > 0, 200, 5);
    shutdown.abort();
    t.equal(reports[0]!.configuration, configuration, `${status} ${code}: ${configuration ? 'configuration' : 'transient'}`);
    t.match(lines[0]!.msg, configuration ? CONFIGURATION : TRANSIENT, `${status} ${code}: its line`);
  }
});

t.test('an S3 that is down (connection refused): transient; a code that changes is logged again; S3 back, success', async (t) => {
  const port = await refusedPort();
  // Down first: nothing listens where a proxy will.
  const { lines, reports, ended } = watch(t, `http://127.0.0.1:${port}`);
  await eventually(() => reports.length >= 2, 200, 5);
  t.match(reports[0], { code: 'ECONNREFUSED', configuration: false });
  // Back, at the same address, throttling first.
  const back = await startFaultProxy(t, s3, port);
  back.decidePreflight = () => ({ status: 503, code: 'SlowDown' });
  await eventually(() => reports.some((r) => r?.code === 'SlowDown'), 200, 5);
  back.decidePreflight = () => 'pass';
  await ended;
  t.strictSame(lines.map((l) => [l.level, l.code]), [['error', 'ECONNREFUSED'], ['error', 'SlowDown'], ['info', undefined]]);
  t.match(lines[0]!.msg, TRANSIENT);
});

// `.invalid` never resolves (RFC 6761); a machine without a resolver answers otherwise (EAI_AGAIN).
const NO_HOST = 'no-such-host.invalid';
const resolved = await lookup(NO_HOST).then(() => 'resolved', (err: NodeJS.ErrnoException) => err.code);

t.test('an endpoint whose host name does not exist: a configuration failure (a wrong S3_ENDPOINT or AWS_REGION)', { skip: resolved !== 'ENOTFOUND' && `this machine's resolver answers ${resolved} for ${NO_HOST}, not ENOTFOUND` }, async (t) => {
  const host = NO_HOST;
  const { lines, reports, shutdown } = watch(t, `http://${host}:9000`);
  await eventually(() => reports.length > 0, 200, 10);
  shutdown.abort();
  t.match(reports[0], { code: 'ENOTFOUND', configuration: true });
  t.match(lines[0]!.msg, CONFIGURATION);
});

t.test('no answer within the timeout: transient, labelled Timeout, naming UPLOAD_TIMEOUT_MS', async (t) => {
  proxy.decidePreflight = () => 'stall';
  const { lines, reports, shutdown } = watch(t, proxy.endpoint, { timeoutMs: 200 });
  await eventually(() => reports.length > 0, 200, 10);
  shutdown.abort();
  t.match(reports[0], { code: 'Timeout', configuration: false });
  t.match(lines, [{ level: 'error', code: 'Timeout', reason: 'no answer within UPLOAD_TIMEOUT_MS (200 ms)', where: 's3://test-bucket/events/raw/_preflight', msg: TRANSIENT }]);
});

t.test('aborted by the shutdown, during a PUT or between retries: it ends, with nothing more reported or logged', async (t) => {
  proxy.decidePreflight = () => 'stall';
  const during = watch(t, proxy.endpoint);
  await eventually(() => proxy.preflights.length === 1, 200, 5);
  during.shutdown.abort();
  await during.ended;
  t.strictSame([during.reports, during.lines], [[], []], 'during the PUT: not S3\'s fault');
  // The stalled PUT is never forwarded: the proxy drops it at teardown.
  proxy.decidePreflight = () => ({ status: 403, code: 'AccessDenied' });
  const between = watch(t, proxy.endpoint, { retryMs: 3_600_000 });
  await eventually(() => between.reports.length === 1, 200, 5);
  between.shutdown.abort();
  await between.ended;
  t.equal(between.reports.length, 1, 'the wait for the next retry ends at once');
});

t.test('isConfigurationError: no credentials found is one; an unknown error is not', async (t) => {
  // Built here: the SDK's credential chain would look for an instance role first (slow, and this machine's).
  t.equal(isConfigurationError(Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' })), true);
  t.equal(isConfigurationError(new Error('something else')), false, 'transient, as before this check: the server stays ready');
});
