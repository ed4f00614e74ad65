// Idempotency-Key end to end (issue 23): real servers, a real S3-compatible server, real HTTP.
// In this process: a repeat is replayed and stored once, a first request still in flight makes a
// repeat 409, another body 422, a refused first request leaves its key free. A server process of
// its own for what only a process shows: a SIGKILL at ACK_LEVEL=disk and the restart after it.
// WORKERS=2 (a spawned server, slow to start): idempotency.ops.test.ts.
import { gzipSync } from 'node:zlib';
import t from 'tap';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { startInProcess } from '../helpers/in-process.js';
import { s3Env, startS3 } from '../helpers/s3.js';
import { eventually, killed, post, startServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

const JSON_TYPE = { 'content-type': 'application/json' };
const BODY = '[{"n":1},{"n":2}]';

t.test('the same body three times with one Idempotency-Key: one 202, two replays, stored once', async (t) => {
  const s3 = await startS3(t);
  const server = await startInProcess(t, { ...s3.env, BATCH_MAX_AGE_MS: '100' });
  const headers = { ...JSON_TYPE, 'idempotency-key': 'batch-1' };
  const first = await server.post(BODY, headers);
  t.equal(first.status, 202);
  t.same(first.json, { accepted: 2 });
  t.equal(first.headers.get('idempotent-replayed'), null, 'the first is no replay');
  for (const attempt of [2, 3]) {
    const again = await server.post(BODY, headers);
    t.equal(again.status, 202, `attempt ${attempt}`);
    t.same(again.json, { accepted: 2 }, 'the first answer');
    t.equal(again.headers.get('idempotent-replayed'), 'true');
  }
  // The same events gzipped, the key in the query (navigator.sendBeacon): known by the decompressed body.
  const beacon = await post(`${server.url}/v1/events?idempotency_key=batch-1`, gzipSync(BODY), { ...JSON_TYPE, 'content-encoding': 'gzip' });
  t.equal(beacon.headers.get('idempotent-replayed'), 'true', 'the query names the same key; gzip does not change the body');
  await eventually(async () => (await server.metric('s3_events_stored_total')) === 2);
  t.equal(await server.metric('idempotency_replays_total'), 3);
  t.equal(await server.metric('ingest_events_accepted_total'), 2, 'replays accept nothing');
  t.equal(await server.metric('idempotency_keys'), 1);
  const events = (await s3.objects()).flatMap((o) => o.records.map((r) => r.event));
  t.same(events, [{ n: 1 }, { n: 2 }], 'stored once');
});

t.test('another body under the key is 422; a bad key is 400; a refused first request does not use up its key', async (t) => {
  const s3 = await startS3(t);
  const server = await startInProcess(t, { ...s3.env, MAX_EVENTS_PER_REQUEST: '2' });
  const headers = { ...JSON_TYPE, 'idempotency-key': 'k' };
  t.equal((await server.post(BODY, headers)).status, 202);
  const reused = await server.post('[{"n":3}]', headers);
  t.equal(reused.status, 422);
  t.equal(reused.json.error, 'idempotency_key_reused');
  t.equal(await server.metric('idempotency_conflicts_total', '{reason="body_differs"}'), 1);
  // (A byte outside ASCII cannot be tested: uWS reads a header value only up to it.)
  for (const bad of ['x'.repeat(129), 'a\tb']) {
    const answer = await server.post(BODY, { ...JSON_TYPE, 'idempotency-key': bad });
    t.equal(answer.status, 400, JSON.stringify(bad));
    t.equal(answer.json.error, 'invalid_idempotency_key');
  }
  t.equal((await server.post(BODY, { ...JSON_TYPE, 'idempotency-key': 'x'.repeat(128) })).status, 202, '128 characters');
  // Refused (400: too many events), then the corrected request with the same key is taken.
  const refused = await server.post('[{},{},{}]', { ...JSON_TYPE, 'idempotency-key': 'fresh' });
  t.equal(refused.status, 400);
  const taken = await server.post('[{},{}]', { ...JSON_TYPE, 'idempotency-key': 'fresh' });
  t.equal(taken.status, 202);
  t.equal(taken.headers.get('idempotent-replayed'), null, 'a new request, not a replay');
});

t.test('ACK_LEVEL=s3: a repeat while the first is in flight is 409 in_progress, then gets the first answer', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  proxy.decide = () => 'stall';
  const server = await startInProcess(t, { ...s3Env(proxy.endpoint), ACK_LEVEL: 's3', BATCH_MAX_AGE_MS: '10' });
  const headers = { ...JSON_TYPE, 'idempotency-key': 'slow' };
  const first = server.post(BODY, headers);
  await eventually(() => proxy.puts.length > 0);
  const during = await server.post(BODY, headers);
  t.equal(during.status, 409);
  t.equal(during.json.error, 'in_progress');
  t.equal(during.headers.get('retry-after'), '1');
  proxy.decide = () => 'pass';
  proxy.release();
  t.same((await first).json, { accepted: 2, stored: 's3' });
  const after = await server.post(BODY, headers);
  t.same(after.json, { accepted: 2, stored: 's3' }, 'the first answer, body and all');
  t.equal(after.headers.get('idempotent-replayed'), 'true');
  t.equal(await server.metric('idempotency_conflicts_total', '{reason="in_progress"}'), 1);
  t.equal((await s3.objects()).length, 1);
});

t.test('ACK_LEVEL=disk: the key survives a SIGKILL; after the restart the repeats are replayed, the events stored once', async (t) => {
  const s3 = await startS3(t);
  const env = { ...s3.env, ACK_LEVEL: 'disk', WAL_DIR: tempDir(t, 'wal'), DLQ_DIR: tempDir(t, 'dlq'), BATCH_MAX_AGE_MS: '50' };
  const headers = { ...JSON_TYPE, 'idempotency-key': 'crash-1' };
  const first = await startServer(t, env);
  t.same((await first.post(BODY, headers)).json, { accepted: 2 });
  // Stored before the kill (and marked done in the WAL): only the key record tells the restart of it.
  await eventually(async () => (await first.metric('s3_events_stored_total')) === 2);
  await killed(t, first);
  const second = await startInProcess(t, env);
  for (const attempt of [2, 3]) {
    const again = await second.post(BODY, headers);
    t.equal(again.headers.get('idempotent-replayed'), 'true', `attempt ${attempt}, after the restart`);
    t.same(again.json, { accepted: 2 });
  }
  t.equal((await second.post('[{"n":9}]', headers)).status, 422, 'the body is known too');
  t.equal(await second.metric('idempotency_keys'), 1);
  const events = (await s3.objects()).flatMap((o) => o.records.map((r) => r.event));
  t.same(events, [{ n: 1 }, { n: 2 }], 'stored once');
});
