// S3 answering errors or nothing, produced on the wire by the fault proxy in front of a real S3
// server; the ingest servers run in the test's process.
import t from 'tap';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { startInProcess } from '../helpers/in-process.js';
import { s3Env, startS3 } from '../helpers/s3.js';
import { eventually } from '../helpers/server.js';

const FAST = { BATCH_MAX_AGE_MS: '100' };

t.test('500 InternalError and 503 SlowDown are retried, to the same key, until S3 takes the batch', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const faults = [
    { status: 500, code: 'InternalError' },
    { status: 503, code: 'SlowDown' },
  ];
  proxy.decide = ({ attempt }) => faults[attempt - 1] ?? 'pass';
  const server = await startInProcess(t, { ...s3Env(proxy.endpoint), ...FAST });
  t.equal((await server.post('[{"id":1},{"id":2}]')).status, 202);
  await eventually(async () => (await server.metric('s3_events_stored_total')) === 2);
  t.equal(proxy.puts.length, 3, 'two failed attempts, then one that passed');
  t.equal(new Set(proxy.puts.map((p) => p.key)).size, 1, 'every attempt PUT the same key');
  const objects = await s3.objects();
  t.equal(objects.length, 1, 'one object, no duplicates');
  t.same(objects[0]!.records.map((r) => r.event), [{ id: 1 }, { id: 2 }]);
  t.equal(await server.metric('s3_put_errors_total', '{code="InternalError"}'), 1);
  t.equal(await server.metric('s3_put_errors_total', '{code="SlowDown"}'), 1);
  t.equal(await server.metric('dlq_events_spilled_total'), 0);
  t.equal(server.logs.filter((l) => l.msg === 'S3 put attempt failed').length, 2, 'each failed attempt logged once');
});

t.test('403 AccessDenied is not retried; the batch is spilled to the DLQ at once', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  proxy.decide = () => ({ status: 403, code: 'AccessDenied' });
  // No re-upload during this test, so every PUT seen is the live upload's.
  const server = await startInProcess(t, { ...s3Env(proxy.endpoint), ...FAST, UPLOAD_MAX_ATTEMPTS: '5', DLQ_REUPLOAD_IDLE_MS: '3600000' });
  t.equal((await server.post('[{"id":1},{"id":2},{"id":3}]')).status, 202);
  await eventually(async () => (await server.metric('dlq_events_spilled_total')) === 3);
  t.equal(proxy.puts.length, 1, 'one attempt only');
  t.equal(await server.metric('s3_put_errors_total', '{code="AccessDenied"}'), 1);
  t.equal(await server.metric('dlq_files_current'), 1);
  const failing = await server.metric('s3_put_failing_seconds');
  t.ok(failing > 0, 's3_put_failing_seconds is above 0 while no PUT succeeds');
  await eventually(async () => (await server.metric('s3_put_failing_seconds')) > failing);
  t.pass('and counts up');
  const failed = await server.waitForLog((l) => l.msg === 'S3 upload failed for good');
  t.match(failed, { level: 'error', events: 3, key: proxy.puts[0]!.key, code: 'AccessDenied' });
  const attempt = server.logs.find((l) => l.msg === 'S3 put attempt failed')!;
  t.match(attempt, { level: 'warn', attempt: 1, code: 'AccessDenied', retriesLeft: 0, willRetry: false }, 'not retried, and the line says so');
  t.same(await s3.objects(), []);
});

t.test('a DLQ file S3 keeps refusing does not make s3_put_failing_seconds rise while live uploads succeed (no false page on an idle task)', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  // The first batch's key is refused, every time, by live upload and re-upload alike; every other key passes.
  let refused: string | undefined;
  proxy.decide = ({ key }) => ((refused ??= key) === key ? { status: 403, code: 'AccessDenied' } : 'pass');
  const server = await startInProcess(t, { ...s3Env(proxy.endpoint), ...FAST, DLQ_REUPLOAD_IDLE_MS: '50' });
  t.equal((await server.post('{"id":"refused"}')).status, 202);
  await eventually(async () => (await server.metric('dlq_events_spilled_total')) === 1);
  t.equal((await server.post('{"id":"stored"}')).status, 202);
  await eventually(async () => (await server.metric('s3_events_stored_total')) === 1);
  // Idle now: the re-uploader retries the refused file (it backs off, 1 s then more).
  const refusals = () => proxy.puts.filter((p) => p.key === refused).length;
  const before = refusals();
  await eventually(() => refusals() >= before + 2, 400, 50);
  t.equal(await server.metric('dlq_files_current'), 1, 'the file is kept');
  t.ok((await server.metric('s3_put_errors_total', '{code="AccessDenied"}')) >= 3, 'its refusals are counted as errors');
  t.equal(await server.metric('s3_put_failing_seconds'), 0, 'but S3 takes live batches: not failing');
});

t.test('after an outage on an idle task, a re-upload S3 takes ends s3_put_failing_seconds (no live batch needed)', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  let down = true;
  proxy.decide = () => (down ? { status: 403, code: 'AccessDenied' } : 'pass');
  const server = await startInProcess(t, { ...s3Env(proxy.endpoint), ...FAST, DLQ_REUPLOAD_IDLE_MS: '50' });
  t.equal((await server.post('{"id":1}')).status, 202);
  await eventually(async () => (await server.metric('dlq_events_spilled_total')) === 1);
  t.ok((await server.metric('s3_put_failing_seconds')) > 0, 'failing while live uploads fail');
  down = false;
  await eventually(async () => (await server.metric('dlq_events_reuploaded_total')) === 1, 400, 50);
  t.equal(await server.metric('s3_put_failing_seconds'), 0, 'S3 took a PUT: no longer failing');
});

t.test('UPLOAD_MAX_ATTEMPTS bounds retries of an error that keeps coming', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  proxy.decide = () => ({ status: 503, code: 'SlowDown' });
  const server = await startInProcess(t, { ...s3Env(proxy.endpoint), ...FAST, UPLOAD_MAX_ATTEMPTS: '2', DLQ_REUPLOAD_IDLE_MS: '3600000' });
  t.equal((await server.post('{"id":1}')).status, 202);
  await eventually(async () => (await server.metric('dlq_events_spilled_total')) === 1);
  t.equal(proxy.puts.length, 2);
  t.equal(await server.metric('s3_put_errors_total', '{code="SlowDown"}'), 2);
  const attempts = server.logs.filter((l) => l.msg === 'S3 put attempt failed');
  t.match(attempts, [{ attempt: 1, retriesLeft: 1, willRetry: true }, { attempt: 2, retriesLeft: 0, willRetry: false }]);
  t.match(await server.waitForLog((l) => l.msg === 'S3 upload failed for good'), { code: 'SlowDown' });
});

t.test('an attempt S3 never answers is aborted at UPLOAD_TIMEOUT_MS and retried', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  proxy.decide = ({ attempt }) => (attempt === 1 ? 'stall' : 'pass');
  const server = await startInProcess(t, { ...s3Env(proxy.endpoint), ...FAST, UPLOAD_TIMEOUT_MS: '300' });
  t.equal((await server.post('{"id":"late"}')).status, 202);
  await eventually(async () => (await server.metric('s3_events_stored_total')) === 1);
  t.equal(await server.metric('s3_put_errors_total', '{code="Timeout"}'), 1);
  t.equal(await server.metric('s3_put_failing_seconds'), 0, 'back to 0 at the success after the timeout');
  t.equal(proxy.puts.length, 2);
  t.equal((await s3.objects()).length, 1);
});

t.test('S3 stalls: back-pressure fills the channel, the front answers 503 queue_full with Retry-After; nothing accepted is lost', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  let stalling = true;
  proxy.decide = () => (stalling ? 'stall' : 'pass');
  const server = await startInProcess(t, {
    ...s3Env(proxy.endpoint),
    CHANNEL_MAX_EVENTS: '50',
    BATCH_MAX_EVENTS: '10',
    BATCH_MAX_AGE_MS: '50',
    UPLOAD_CONCURRENCY: '1',
    UPLOAD_QUEUE_MAX_BATCHES: '1',
    UPLOAD_TIMEOUT_MS: '600000',
  });
  const accepted: number[] = [];
  let full: Awaited<ReturnType<typeof server.post>> | undefined;
  for (let id = 0; id < 1000 && full === undefined; id++) {
    const answer = await server.post(JSON.stringify({ id }));
    if (answer.status === 202) accepted.push(id);
    else full = answer;
  }
  t.ok(full, `503 after ${accepted.length} accepted events`);
  t.equal(full!.status, 503);
  t.equal(full!.json.error, 'queue_full');
  t.equal(full!.headers.get('retry-after'), '1');
  t.ok(accepted.length <= 50 + 10 * 3, 'held events stay within channel + open batch + queued + in-flight');
  t.equal(await server.metric('channel_events'), 50);
  t.equal(await server.metric('upload_queue_batches'), 1);
  t.equal(await server.metric('upload_inflight_batches'), 1);
  t.equal(await server.metric('http_requests_rejected_queue_full_total'), 1);
  await server.waitForLog((l) => l.msg === 'queue full (drop)');

  stalling = false;
  proxy.release();
  await eventually(async () => (await server.metric('s3_events_stored_total')) === accepted.length);
  const stored = (await s3.objects()).flatMap((o) => o.records.map((r) => r.event.id as number));
  t.same(stored.sort((a, b) => a - b), accepted, 'every accepted event stored exactly once');
  t.equal((await server.post('{"id":"after"}')).status, 202, 'accepting again once S3 recovered');
});
