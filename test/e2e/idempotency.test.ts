// Idempotency-Key end to end (issue 23): real servers, a real S3-compatible server, real HTTP.
// In this process: a repeat is replayed and stored once, a first request still in flight makes a
// repeat 409, another body 422, a refused first request leaves its key free. A server process of
// its own for what only a process shows: a SIGKILL at ACK_LEVEL=disk and the restart after it.
// Across restarts at ACK_LEVEL=disk a key outlives its WAL segment in the key journal
// (WAL_DIR/keys/, src/wal/key-journal.ts): a clean restart, and a segment removed while running.
// WORKERS=2 (a spawned server, slow to start): idempotency.ops.test.ts.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import t from 'tap';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { startInProcess } from '../helpers/in-process.js';
import { s3Env, startS3 } from '../helpers/s3.js';
import { eventually, killed, post, startServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

const JSON_TYPE = { 'content-type': 'application/json' };
const BODY = '[{"n":1},{"n":2}]';
const segments = (dir: string) => readdirSync(dir).filter((n) => n.endsWith('.wal')).sort();

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

const RESTART_HEADERS = { ...JSON_TYPE, 'idempotency-key': 'restart-1' };

t.test('ACK_LEVEL=disk: after a clean shutdown and restart a retry is replayed and stores nothing', async (t) => {
  const s3 = await startS3(t);
  const walDir = tempDir(t, 'wal');
  const env = { ...s3.env, ACK_LEVEL: 'disk', WAL_DIR: walDir, DLQ_DIR: tempDir(t, 'dlq'), BATCH_MAX_AGE_MS: '20' };
  const first = await startInProcess(t, env);
  t.same((await first.post(BODY, RESTART_HEADERS)).json, { accepted: 2 });
  await eventually(async () => (await first.metric('s3_events_stored_total')) === 2);
  t.same(await first.stop(), { code: 0, signal: null });
  t.same(segments(walDir), [], 'a clean stop removes every segment, and with them the key records');
  const second = await startInProcess(t, env);
  const again = await second.post(BODY, RESTART_HEADERS);
  t.same([again.status, again.headers.get('idempotent-replayed'), again.json], [202, 'true', { accepted: 2 }], 'the first answer, from the journal');
  t.equal((await second.post('[{"n":9}]', RESTART_HEADERS)).status, 422, 'the body is known too');
  t.equal(await second.metric('idempotency_keys'), 1);
  t.equal(await second.metric('ingest_events_accepted_total'), 0, 'the replay accepts nothing');
  const events = (await s3.objects()).flatMap((o) => o.records.map((r) => r.event));
  t.same(events, [{ n: 1 }, { n: 2 }], 'stored once');
});

t.test('ACK_LEVEL=disk: a key whose segment was removed while running is in the journal, and known after a restart', async (t) => {
  const s3 = await startS3(t);
  const walDir = tempDir(t, 'wal');
  const env = { ...s3.env, ACK_LEVEL: 'disk', WAL_DIR: walDir, DLQ_DIR: tempDir(t, 'dlq'), BATCH_MAX_AGE_MS: '20', WAL_SEGMENT_BYTES: String(64 * 1024) };
  const first = await startInProcess(t, env);
  t.same((await first.post(BODY, RESTART_HEADERS)).json, { accepted: 2 });
  // 70 KiB more fills segment 0; the next request opens segment 1, and once all is stored segment 0 goes.
  t.equal((await first.post(JSON.stringify([{ pad: 'x'.repeat(70 * 1024) }]), { 'content-type': 'application/json' })).status, 202);
  t.equal((await first.post('[{"n":3}]', { 'content-type': 'application/json' })).status, 202);
  await eventually(async () => (await first.metric('s3_events_stored_total')) === 4);
  await eventually(async () => (await first.post('[{"n":4}]', { 'content-type': 'application/json' }), !segments(walDir).includes('000000000000.wal')));
  // The segment is gone and the server still runs: the key is on disk in the journal already.
  const journal = readdirSync(join(walDir, 'keys')).map((name) => readFileSync(join(walDir, 'keys', name), 'utf8')).join('');
  t.match(journal, /"key":"restart-1"/);
  t.same(await first.stop(), { code: 0, signal: null });
  const second = await startInProcess(t, env);
  const again = await second.post(BODY, RESTART_HEADERS);
  t.same([again.status, again.headers.get('idempotent-replayed')], [202, 'true']);
  t.equal(await second.metric('ingest_events_accepted_total'), 0, 'the replay accepts nothing');
  const events = (await s3.objects()).flatMap((o) => o.records.map((r) => r.event));
  t.same(events.filter((e) => e.n === 1 || e.n === 2), [{ n: 1 }, { n: 2 }], 'stored once');
});
