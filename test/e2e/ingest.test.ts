// The whole server (in the test's process): every body format in, every accepted event out of S3
// exactly once, laid out as the README's "Stored objects" says.
import { once } from 'node:events';
import net from 'node:net';
import { crc32, gzipSync } from 'node:zlib';
import t from 'tap';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { startInProcess } from '../helpers/in-process.js';
import { s3Env, startS3 } from '../helpers/s3.js';
import { eventually } from '../helpers/server.js';

const KEY_PATTERN = /^raw\/(\d{4})\/(\d{2})\/(\d{2})\/(\d{2})\/(\d{13})-test-node-[0-9a-f]{6}-[0-9a-z]{8}\.jsonl\.gz$/;

t.test('every body format lands in S3 once, in the documented key layout and line format', async (t) => {
  const s3 = await startS3(t);
  // The proxy only watches here (every request passes), to see the headers S3 receives.
  const proxy = await startFaultProxy(t, s3);
  const server = await startInProcess(t, { ...s3Env(proxy.endpoint), BATCH_MAX_AGE_MS: '200', INSTANCE_ID: 'test-node' });
  const sent: Record<string, unknown>[] = [];
  const expect = async (body: string | Buffer, headers: Record<string, string>, events: Record<string, unknown>[]) => {
    const answer = await server.post(body, headers);
    t.equal(answer.status, 202, `202 for ${headers['content-type']}`);
    t.same(answer.json, { accepted: events.length });
    sent.push(...events);
  };

  await expect('{"id":"object-1","n":1}', { 'content-type': 'application/json' }, [{ id: 'object-1', n: 1 }]);
  await expect('[{"id":"array-1"},{"id":"array-2","nested":{"a":[1,{"b":"}]{"}]}}]', { 'content-type': 'application/json; charset=utf-8' }, [
    { id: 'array-1' },
    { id: 'array-2', nested: { a: [1, { b: '}]{' }] } },
  ]);
  await expect('{"id":"nd-1"}\n\n  \n{"id":"nd-2","s":"quote \\" and backslash \\\\"}\r\n', { 'content-type': 'application/x-ndjson' }, [
    { id: 'nd-1' },
    { id: 'nd-2', s: 'quote " and backslash \\' },
  ]);
  await expect('{"id":"beacon-1"}', { 'content-type': 'text/plain;charset=UTF-8' }, [{ id: 'beacon-1' }]);
  await expect(gzipSync('[{"id":"gzip-1"},{"id":"gzip-2"}]'), { 'content-type': 'application/json', 'content-encoding': 'gzip' }, [
    { id: 'gzip-1' },
    { id: 'gzip-2' },
  ]);
  await expect(gzipSync('{"id":"gzip-nd-1"}\n{"id":"gzip-nd-2"}\n'), { 'content-type': 'application/x-ndjson', 'content-encoding': 'gzip' }, [
    { id: 'gzip-nd-1' },
    { id: 'gzip-nd-2' },
  ]);
  // Pretty-printed JSON still becomes one line per event.
  await expect('[\n  {\n    "id": "pretty-1",\n    "list": [\n      1,\n      2\n    ]\n  }\r\n]', { 'content-type': 'application/json' }, [
    { id: 'pretty-1', list: [1, 2] },
  ]);
  await expect('{"id":"unicode-1","text":"한국어 ✓ 😀"}', { 'content-type': 'application/json' }, [{ id: 'unicode-1', text: '한국어 ✓ 😀' }]);

  await eventually(async () => (await server.metric('s3_events_stored_total')) === sent.length);
  const objects = await s3.objects();
  const stored = objects.flatMap((o) => o.records);
  t.same(
    stored.map((r) => r.event).sort((a, b) => String(a.id).localeCompare(String(b.id))),
    sent.sort((a, b) => String(a.id).localeCompare(String(b.id))),
    'every accepted event stored exactly once, as sent',
  );
  for (const object of objects) {
    const match = KEY_PATTERN.exec(object.key);
    t.ok(match, `key ${object.key} follows {prefix}/YYYY/MM/DD/HH/{batchId}.jsonl.gz`);
    const first = Math.min(...object.records.map((r) => r.received_at));
    t.equal(Number(match![5]), first, 'batch id starts with the first event time');
    t.equal(match!.slice(1, 5).join('-'), new Date(first).toISOString().slice(0, 13).replace('T', '-'), 'date path is the UTC hour of the first event');
    t.equal(object.contentType, 'application/x-ndjson');
    t.equal(object.contentEncoding, 'gzip');
    t.equal(object.metadata['event-count'], String(object.records.length), 'event count in user metadata');
    for (const line of object.lines) t.match(line, /^\{"received_at":\d{13},"event":\{.*\}\}$/, 'line format');
    const put = proxy.puts.find((p) => p.key === object.key)!;
    const expected = Buffer.alloc(4);
    expected.writeUInt32BE(crc32(put.body));
    t.equal(put.headers['x-amz-checksum-crc32'], expected.toString('base64'), 'CRC32 of the body sent for S3 to verify');
  }
  t.equal(proxy.puts.length, objects.length, 'one PUT per object: no retries, no duplicates');
  t.equal(await server.metric('ingest_events_accepted_total'), sent.length);
  t.equal(await server.metric('http_requests_total', '{status="202"}'), 8);
});

t.test('big integers, number formats and key order are stored exactly as sent', async (t) => {
  const s3 = await startS3(t);
  const server = await startInProcess(t, { ...s3.env, BATCH_MAX_AGE_MS: '100' });
  const raw = '{"z":1,"id":12345678901234567890,"f":1.50,"e":1E3,"a":{"y":true,"b":null}}';
  t.equal((await server.post(raw)).status, 202);
  await eventually(async () => (await server.metric('s3_events_stored_total')) === 1);
  const [object] = await s3.objects();
  t.match(object!.lines[0], new RegExp(`^\\{"received_at":\\d{13},"event":${raw.replace(/[{}.[\]]/g, '\\$&')}\\}$`));
});

t.test('health, readiness, metrics, 404 and 405', async (t) => {
  const s3 = await startS3(t);
  const server = await startInProcess(t, s3.env);
  t.equal((await fetch(`${server.url}/healthz`)).status, 200);
  t.equal((await fetch(`${server.url}/readyz`)).status, 200);
  const metrics = await fetch(server.metricsUrl);
  t.equal(metrics.status, 200);
  t.match(metrics.headers.get('content-type'), /text\/plain/);
  const text = await metrics.text();
  for (const name of [
    'http_requests_rejected_queue_full_total',
    'http_requests_rejected_body_too_large_total',
    's3_put_errors_total',
    's3_events_stored_total',
    'dlq_events_dropped_total',
    'channel_events',
    'channel_bytes',
    'upload_queue_batches',
    's3_put_duration_seconds',
    'nodejs_eventloop_lag_p99_seconds',
  ]) {
    t.match(text, new RegExp(`^# TYPE ${name} `, 'm'), `${name} exported`);
  }
  const notFound = await fetch(`${server.url}/nope`);
  t.equal(notFound.status, 404);
  t.equal(((await notFound.json()) as { error: string }).error, 'not_found');
  const wrongMethod = await fetch(`${server.url}/v1/events`);
  t.equal(wrongMethod.status, 405);
  t.equal(wrongMethod.headers.get('allow'), 'POST');
  t.equal(((await wrongMethod.json()) as { error: string }).error, 'method_not_allowed');
  t.equal((await fetch(`${server.url}/healthz`, { method: 'POST', body: 'x' })).status, 405);
});

t.test('METRICS_PORT (a free one here; 8081 by default) serves /metrics there only', async (t) => {
  const s3 = await startS3(t);
  const server = await startInProcess(t, { ...s3.env, METRICS_PORT: '0' });
  const listening = await server.waitForLog((l) => l.msg === 'listening');
  t.not(listening.metricsPort, listening.port);
  t.equal((await fetch(`http://127.0.0.1:${listening.metricsPort as number}/metrics`)).status, 200);
  t.equal((await fetch(`${server.url}/metrics`)).status, 404);
});

/** Headers first, then the body in small pieces, each written apart: as a slow or busy client sends. */
async function dripped(port: number, head: string, pieces: string[]): Promise<string> {
  const socket = net.connect(port, '127.0.0.1');
  let answer = '';
  socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
  await once(socket, 'connect');
  socket.write(head);
  for (const piece of pieces) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    socket.write(piece);
  }
  await eventually(() => answer.includes('\r\n\r\n'));
  socket.destroy();
  return answer.split('\r\n')[0]!;
}

t.test('a body that arrives after its headers, in pieces, with Content-Length or chunked', async (t) => {
  const s3 = await startS3(t);
  const server = await startInProcess(t, { ...s3.env, BATCH_MAX_AGE_MS: '100' });
  const body = '{"id":"dripped","pad":"xxxxxxxxxxxxxxxx"}';
  const pieces = body.match(/.{1,5}/g)!;
  const head = 'POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n';
  t.equal(await dripped(server.port, `${head}content-length: ${body.length}\r\n\r\n`, pieces), 'HTTP/1.1 202 Accepted');
  const chunks = [...pieces.map((p) => `${p.length.toString(16)}\r\n${p}\r\n`), '0\r\n\r\n'];
  t.equal(await dripped(server.port, `${head}transfer-encoding: chunked\r\n\r\n`, chunks), 'HTTP/1.1 202 Accepted');
  await eventually(async () => (await server.metric('s3_events_stored_total')) === 2);
  t.ok(server.running(), 'still running');
  t.notOk(server.logs.some((l) => l.level === 'error' || l.level === 'fatal'), 'no error logged');
});
