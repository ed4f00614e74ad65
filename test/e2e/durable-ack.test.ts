// ACK_LEVEL=disk and s3 (issue 13): a 202 that survives SIGKILL. Real server processes where they
// are killed, else servers in the test's process (a shared root's processes, killed, paused and
// refused their lease: shared-root.ops.test.ts, in test:ops); a real S3 server, real SIGKILLs and real WAL files; a torn write and a corrupt segment,
// which cannot be produced on demand, are made by editing a real segment between two runs.
// Bounded in requests. A client that hangs up, and a WAL volume that fills (ENOSPC), are in
// durable-ack.ops.test.ts (test:ops).
import { appendFileSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { assertExactlyOnce, audit, AckingClient } from '../harness/zero-loss.js';
import { refusedPort, startFaultProxy } from '../helpers/fault-proxy.js';
import { startInProcess } from '../helpers/in-process.js';
import { s3Env, startS3 } from '../helpers/s3.js';
import { eventually, killed, ROOT, startServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';
import { EVENTS, readRecords } from '../../src/wal/format.js';

const segments = (dir: string) => readdirSync(dir).filter((n) => n.endsWith('.wal')).sort();

t.test('ACK_LEVEL=disk: the torn tail is cut and counted, never uploaded', async (t) => {
  const s3 = await startS3(t);
  const walDir = tempDir(t, 'wal');
  const port = await refusedPort();
  const env = { ...s3Env(`http://127.0.0.1:${port}`), ACK_LEVEL: 'disk', WAL_DIR: walDir, DLQ_DIR: tempDir(t, 'dlq'), BATCH_MAX_AGE_MS: '3600000', UPLOAD_MAX_ATTEMPTS: '1' };
  const first = await startServer(t, env);
  const client = new AckingClient({ url: first.url, concurrency: 2, eventsPerRequest: 5, maxRequests: 40 });
  await client.run();
  t.equal(client.acked.size, 200);
  await killed(t, first);
  const [segment] = segments(walDir);
  const size = statSync(join(walDir, segment!)).size;
  // Half of a copy of the last record: a valid-looking header, a body cut short.
  const data = readFileSync(join(walDir, segment!));
  appendFileSync(join(walDir, segment!), data.subarray(data.length - 100, data.length - 40));
  await startFaultProxy(t, s3, port);
  const second = await startInProcess(t, { ...env, BATCH_MAX_AGE_MS: '100' });
  t.equal(await second.metric('wal_torn_tails_total'), 1);
  t.equal(await second.metric('wal_replayed_events_total'), 200);
  t.ok(statSync(join(walDir, segment!)).size <= size, 'the tail is cut');
  await eventually(async () => (await second.metric('s3_events_stored_total')) === 200);
  assertExactlyOnce(t, await audit(client, s3), 'after a torn tail');
  t.equal((await s3.objects()).length, 1, 'one object, from the replayed events');
});

t.test('ACK_LEVEL=disk: a corrupt record in the middle is skipped, its segment copied to corrupt/, counted; the server serves', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  proxy.decide = () => 'stall';
  const walDir = tempDir(t, 'wal');
  const env = { ...s3Env(proxy.endpoint), ACK_LEVEL: 'disk', WAL_DIR: walDir, DLQ_DIR: tempDir(t, 'dlq'), BATCH_MAX_AGE_MS: '100', WAL_SEGMENT_BYTES: '65536', UPLOAD_TIMEOUT_MS: '600000' };
  const first = await startServer(t, env);
  const client = new AckingClient({ url: first.url, concurrency: 4, eventsPerRequest: 10, maxRequests: 300, padBytes: 100 });
  await client.run();
  await killed(t, first);
  const names = segments(walDir);
  t.ok(names.length >= 3, `${names.length} segments`);
  // One byte flipped in the middle of the first segment.
  const victim = join(walDir, names[0]!);
  const data = readFileSync(victim);
  data[data.length >> 1] ^= 0xff;
  writeFileSync(victim, data);
  // The PUTs the kill left stalled are never forwarded: the killed run stored nothing.
  proxy.decide = () => 'pass';
  const second = await startInProcess(t, { ...env, UPLOAD_TIMEOUT_MS: '10000' });
  t.equal(await second.metric('wal_segments_quarantined_total'), 1);
  t.equal(await second.metric('wal_records_corrupt_total'), 1, 'one record skipped');
  t.ok(existsSync(join(walDir, 'corrupt', names[0]!)), 'the segment is copied to corrupt/');
  t.equal((await second.post('{"id":"after"}')).status, 202, 'it serves');
  await eventually(async () => (await second.metric('wal_bytes_current')) < 65536 && (await second.metric('upload_inflight_batches')) === 0, 600);
  const report = await audit(client, s3);
  t.same(report.duplicated, [], 'nothing twice');
  t.same(report.unexpected, [], 'nothing refused');
  // The damaged record's events (10 a request), or, when it was an events record of a cut batch,
  // that batch (counted: none of it reached S3, every PUT stalled); nothing when it was a cut record.
  t.ok(report.missing.length <= Math.max(10, await second.metric('wal_lost_events_total')), `lost only the damaged record's events or its batch (${report.missing.length} of ${client.acked.size})`);
});

t.test('ACK_LEVEL=s3: the 202 comes once the batch is in S3, or says it went to the DLQ', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const server = await startInProcess(t, { ...s3Env(proxy.endpoint), ACK_LEVEL: 's3', BATCH_MAX_AGE_MS: '100', UPLOAD_MAX_ATTEMPTS: '1', DLQ_DIR: tempDir(t, 'dlq'), DLQ_REUPLOAD_IDLE_MS: '3600000' });
  const answer = await server.post('[{"id":"a"},{"id":"b"}]');
  t.same([answer.status, answer.json], [202, { accepted: 2, stored: 's3' }]);
  t.same((await s3.objects()).flatMap((o) => o.records.map((r) => r.event.id)), ['a', 'b'], 'in S3 when answered');
  proxy.decide = () => ({ status: 500, code: 'InternalError' });
  const spilled = await server.post('{"id":"c"}');
  t.same([spilled.status, spilled.json], [202, { accepted: 1, stored: 'dlq' }]);
  t.equal(await server.metric('dlq_events_current'), 1, 'in the DLQ when answered');
});

t.test('ACK_LEVEL=disk: a full WAL answers 503 queue_full with Retry-After, and takes events again once S3 drains it', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  proxy.decide = () => 'stall';
  // WAL_SEGMENT_BYTES at its default (16 MiB), far above the bound: segments still turn over.
  const server = await startInProcess(t, { ...s3Env(proxy.endpoint), ACK_LEVEL: 'disk', WAL_DIR: tempDir(t, 'wal'), DLQ_DIR: tempDir(t, 'dlq'), WAL_MAX_BYTES: '1048576', BATCH_MAX_AGE_MS: '50', UPLOAD_TIMEOUT_MS: '600000' });
  // 10 KB events: the bound is reached in about a hundred requests.
  const event = JSON.stringify({ pad: 'x'.repeat(10_000) });
  let answer = await server.post(`[${event}]`);
  for (let i = 0; i < 200 && answer.status === 202; i++) answer = await server.post(`[${event}]`);
  t.equal(answer.status, 503);
  t.equal(answer.json.error, 'queue_full');
  t.equal(answer.headers.get('retry-after'), '1');
  t.ok((await server.metric('wal_bytes_current')) > 900_000, 'the WAL is at its bound');
  t.equal(await server.metric('wal_max_bytes'), 1048576);
  t.ok((await server.metric('wal_bytes_current')) / (await server.metric('wal_max_bytes')) > 0.8, 'IngestWalNearlyFull\'s condition holds');
  const documented = readFileSync(join(ROOT, 'docs/durability.md'), 'utf8').split('\n## Metrics\n')[1]!.split('\n## ')[0]!;
  const listed = [...documented.matchAll(/^\| `(wal_[a-z_]+)`/gm)].map((m) => m[1]!).sort();
  t.same(listed, [...(await server.exported())].filter((name) => name.startsWith('wal_')).sort(), 'docs/durability.md lists every wal_ metric');
  proxy.decide = () => 'pass';
  proxy.release();
  await eventually(async () => (await server.post(`[${event}]`)).status === 202, 600);
  t.pass('accepted again once the stalled batches were stored and their segments deleted');
});

for (const level of ['disk', 's3'] as const) {
  t.test(`ACK_LEVEL=${level}, S3 down, a small DLQ: once it is full every request is 503 queue_full and /readyz not ready, nothing is evicted, and after S3 returns every 202 is in S3 exactly once`, async (t) => {
    const s3 = await startS3(t);
    const port = await refusedPort();
    const server = await startInProcess(t, {
      ...s3Env(`http://127.0.0.1:${port}`),
      ACK_LEVEL: level,
      DLQ_MAX_FILES: '3',
      BATCH_MAX_EVENTS: '10',
      BATCH_MAX_AGE_MS: '50',
      UPLOAD_MAX_ATTEMPTS: '1',
      UPLOAD_CONCURRENCY: '1',
      UPLOAD_QUEUE_MAX_BATCHES: '1',
    });
    // Until a few refusals, however fast the machine takes the requests before the DLQ fills.
    const client = new AckingClient({ url: server.url, concurrency: 2, eventsPerRequest: 10, maxRequests: 400 });
    const load = client.run();
    await eventually(() => (client.outcomes.get('503 queue_full') ?? 0) >= 5, 600);
    client.stop();
    await load;
    t.ok((client.outcomes.get('503 queue_full') ?? 0) >= 5, `refused once full: ${JSON.stringify([...client.outcomes])}`);
    t.equal(await server.metric('dlq_full'), 1, 'dlq_full');
    t.equal(await server.metric('dlq_files_current'), 3, 'the DLQ at DLQ_MAX_FILES, not past it');
    t.ok((await server.metric('http_requests_rejected_dlq_full_total')) > 0, 'the refusals are counted with their cause');
    for (const reason of ['capacity', 'ttl', 'write_failed', 'quarantined']) t.equal(await server.metric('dlq_events_dropped_total', `{reason="${reason}"}`), 0, `nothing dropped: ${reason}`);
    const ready = await fetch(`${server.url}/readyz`);
    t.equal(ready.status, 503, '/readyz not ready');
    t.equal(((await ready.json()) as { error: string }).error, 'queue_full');
    t.ok(server.logs.some((l) => l.msg === 'DLQ full: batch not written; new events are refused until S3 takes queued files back'), 'the refusal is logged');
    // At disk a 202 does not wait for the spill, so requests run ahead of the spills: some batches
    // find the DLQ full. (At s3 each waits for its own, so whether one does is a matter of timing.)
    if (level === 'disk') t.ok(server.logs.some((l) => l.msg.startsWith('batch kept:')), 'a batch neither took is kept, in the WAL');
    // S3 comes back at the same address.
    await startFaultProxy(t, s3, port);
    await eventually(async () => (await server.metric('dlq_events_current')) === 0 && (await fetch(`${server.url}/readyz`)).status === 200, 600);
    const report = await audit(client, s3);
    await eventually(async () => (await audit(client, s3)).missing.length === 0, 600);
    assertExactlyOnce(t, await audit(client, s3), `${level}: after S3 returned`);
    t.ok(report.acked >= 30, `${report.acked} events acknowledged before the DLQ filled`);
    t.equal((await server.post('[{"after":1}]')).status, 202, 'accepting again');
  });
}

t.test('ACK_LEVEL=s3: S3 silent past ACK_TIMEOUT_MS: 503 ack_timeout with Retry-After, counted; the events are still stored once S3 answers', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  proxy.decide = () => 'stall';
  const server = await startInProcess(t, { ...s3Env(proxy.endpoint), ACK_LEVEL: 's3', ACK_TIMEOUT_MS: '300', BATCH_MAX_AGE_MS: '50', UPLOAD_TIMEOUT_MS: '600000' });
  const answer = await server.post('[{"id":"late-1"},{"id":"late-2"}]');
  t.equal(answer.status, 503);
  t.equal(answer.json.error, 'ack_timeout');
  t.match(answer.json.message, /may or may not be stored, so a retry may store them twice/);
  t.equal(answer.headers.get('retry-after'), '1');
  t.equal(await server.metric('http_requests_ack_timeout_total'), 1);
  proxy.decide = () => 'pass';
  proxy.release();
  await eventually(async () => (await s3.objects()).length === 1, 600);
  t.same((await s3.objects())[0]!.records.map((r) => r.event.id), ['late-1', 'late-2'], 'stored after all, as the answer warned');
});

/** Flips a byte in the middle of the payload of the `nth` events record of a segment file. */
function damageEvents(file: string, nth: number): void {
  const data = readFileSync(file);
  const record = readRecords(data).records.filter((r) => r.type === EVENTS)[nth]!;
  data[record.off + 9 + (record.payload.length >> 1)] ^= 0xff;
  writeFileSync(file, data);
}

const storedIds = async (s3: { objects(): Promise<{ records: { event: Record<string, unknown> }[] }[]> }) => new Set((await s3.objects()).flatMap((o) => o.records.map((r) => r.event.id as string)));

t.test('ACK_LEVEL=disk: damage in the last segment with a complete record after it is corruption (quarantined), not a torn tail', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const walDir = tempDir(t, 'wal');
  const env = { ...s3Env(proxy.endpoint), ACK_LEVEL: 'disk', WAL_DIR: walDir, DLQ_DIR: tempDir(t, 'dlq'), BATCH_MAX_AGE_MS: '50', UPLOAD_TIMEOUT_MS: '600000' };
  const first = await startServer(t, env);
  // Stalled PUTs: each batch's cut record is fsynced (the PUT waits for it), nothing settles.
  proxy.decide = () => 'stall';
  t.equal((await first.post('[{"id":"a1"},{"id":"a2"}]')).status, 202);
  await eventually(async () => (await first.metric('upload_inflight_batches')) === 1);
  t.equal((await first.post('[{"id":"b1"},{"id":"b2"}]')).status, 202);
  await eventually(async () => (await first.metric('upload_inflight_batches')) === 2);
  await killed(t, first);
  const [segment] = segments(walDir);
  t.equal(segments(walDir).length, 1, 'one segment: the last');
  // The first events record, acknowledged, with two fsynced cut records and an events record after it.
  damageEvents(join(walDir, segment!), 0);
  proxy.decide = () => 'pass';
  const second = await startInProcess(t, env);
  t.equal(await second.metric('wal_torn_tails_total'), 0, 'not counted as a torn tail');
  t.equal(await second.metric('wal_segments_quarantined_total'), 1, 'counted as quarantined');
  t.ok(existsSync(join(walDir, 'corrupt', segment!)), 'the segment is copied to corrupt/');
  t.ok(second.logs.some((l) => l.level === 'error' && l.msg.startsWith('WAL: corrupt segment')), 'logged at error as corruption');
  t.notOk(second.logs.some((l) => l.msg.startsWith('WAL: torn tail')), 'not logged as a torn tail');
});

t.test('ACK_LEVEL=disk: a damaged cut record: its batch is rebuilt and stored under the key it had', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const walDir = tempDir(t, 'wal');
  const env = { ...s3Env(proxy.endpoint), ACK_LEVEL: 'disk', WAL_DIR: walDir, DLQ_DIR: tempDir(t, 'dlq'), BATCH_MAX_AGE_MS: '100', WAL_SEGMENT_BYTES: '65536', UPLOAD_TIMEOUT_MS: '600000' };
  const first = await startServer(t, env);
  proxy.decide = () => 'stall';
  const pad = (id: string, bytes: number) => JSON.stringify({ id, pad: 'x'.repeat(bytes) });
  // Segment 0: [A][X][cut A+X][P]; segment 1: [cut P][D][cut D]. Then the cut of A and X is damaged
  // (both events records survive; a damaged events record is test/wal/corruption.test.ts's).
  const a = first.post(pad('a', 10));
  const x = first.post(pad('x', 100));
  t.same([(await a).status, (await x).status], [202, 202]);
  await eventually(async () => (await first.metric('upload_inflight_batches')) === 1);
  t.equal((await first.post(pad('p', 70_000))).status, 202, 'P fills segment 0');
  await eventually(async () => (await first.metric('upload_inflight_batches')) === 2);
  t.equal((await first.post(pad('d', 10))).status, 202);
  await eventually(async () => (await first.metric('upload_inflight_batches')) === 3);
  await killed(t, first);
  const names = segments(walDir);
  t.equal(names.length, 2, 'two segments');
  const records = readRecords(readFileSync(join(walDir, names[0]!))).records;
  t.same(records.map((r) => r.type), [EVENTS, EVENTS, 2, EVENTS], 'segment 0: A, X, the cut of A and X, P');
  const cut = JSON.parse(records[2]!.payload.toString()) as { key: string };
  const data = readFileSync(join(walDir, names[0]!));
  data[records[2]!.off + 9 + 10] ^= 0x01; // inside the cut record's JSON
  writeFileSync(join(walDir, names[0]!), data);
  proxy.decide = () => 'pass';
  const second = await startInProcess(t, env);
  t.equal(await second.metric('wal_records_corrupt_total'), 1);
  await eventually(async () => (await second.metric('s3_events_stored_total')) >= 4, 200);
  const objects = await s3.objects();
  const ab = objects.find((o) => o.key === cut.key);
  t.same(ab?.records.map((r) => r.event.id), ['a', 'x'], 'A and X stored under the key their lost cut record had');
  t.same([...(await storedIds(s3))].sort(), ['a', 'd', 'p', 'x'], 'every event, once');
  t.equal(await second.metric('wal_lost_events_total'), 0);
});
