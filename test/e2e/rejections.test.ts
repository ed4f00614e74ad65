// Every 4xx path, with the JSON body that names the error; limits enforced while streaming and after
// gunzip. The servers run in the test's process, except the gzip bomb's, whose peak RSS is read.
import net from 'node:net';
import { createGzip, gzipSync } from 'node:zlib';
import t from 'tap';
import { startInProcess } from '../helpers/in-process.js';
import { parseAnswer, peakRss, resetPeakRss } from '../helpers/raw.js';
import { startS3 } from '../helpers/s3.js';
import { eventually, startServer } from '../helpers/server.js';

const JSON_TYPE = { 'content-type': 'application/json' };
const NDJSON_TYPE = { 'content-type': 'application/x-ndjson' };
/** An object nested `depth` levels deep. */
const nest = (depth: number): string => `${'{"a":'.repeat(depth - 1)}{}${'}'.repeat(depth - 1)}`;

t.test('bad bodies get a 400 naming the problem, and nothing of them is stored', async (t) => {
  const s3 = await startS3(t);
  const server = await startInProcess(t, { ...s3.env, MAX_EVENTS_PER_REQUEST: '3', BATCH_MAX_AGE_MS: '100' });
  const cases: [string, string | Buffer, Record<string, string>, Record<string, unknown>][] = [
    ['partial JSON', '{"a":', JSON_TYPE, { error: 'invalid_json' }],
    ['invalid JSON', '{a:1}', JSON_TYPE, { error: 'invalid_json' }],
    ['trailing garbage', '{"a":1} x', JSON_TYPE, { error: 'invalid_json' }],
    ['a number', '42', JSON_TYPE, { error: 'not_an_object' }],
    ['null', 'null', JSON_TYPE, { error: 'not_an_object' }],
    ['a non-object in an array', '[{"a":1},{"b":2},"c"]', JSON_TYPE, { error: 'not_an_object', index: 2 }],
    ['an array in an array', '[[{"a":1}]]', JSON_TYPE, { error: 'not_an_object', index: 0 }],
    ['too many events in an array', '[{},{},{},{}]', JSON_TYPE, { error: 'too_many_events' }],
    ['too many events in NDJSON', '{}\n{}\n{}\n{}\n', NDJSON_TYPE, { error: 'too_many_events', line: 4 }],
    ['an empty body', '', JSON_TYPE, { error: 'empty_body' }],
    ['a blank body', ' \n\t ', JSON_TYPE, { error: 'empty_body' }],
    ['an empty array', '[]', JSON_TYPE, { error: 'empty_body' }],
    ['blank NDJSON', '\n\n', NDJSON_TYPE, { error: 'empty_body' }],
    ['a bad NDJSON line', '{"a":1}\n{"b":\n', NDJSON_TYPE, { error: 'invalid_json', line: 2 }],
    ['a non-object NDJSON line', '{"a":1}\n[1]\n', NDJSON_TYPE, { error: 'not_an_object', line: 2 }],
    ['invalid UTF-8', Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]), JSON_TYPE, { error: 'invalid_json' }],
    ['a body that claims gzip but is not', '{"a":1}', { ...JSON_TYPE, 'content-encoding': 'gzip' }, { error: 'invalid_gzip' }],
    ['an event nested 65 deep (MAX_EVENT_DEPTH 64)', nest(65), JSON_TYPE, { error: 'too_deep' }],
    ['an event nested 100,000 deep', nest(100_000), JSON_TYPE, { error: 'too_deep' }],
    ['a deep event in a batch', `[{},${nest(65)}]`, JSON_TYPE, { error: 'too_deep', index: 1 }],
    ['a deep NDJSON line', `{}\n${nest(65)}\n`, NDJSON_TYPE, { error: 'too_deep', line: 2 }],
  ];
  for (const [name, body, headers, expected] of cases) {
    const answer = await server.post(body, headers);
    t.equal(answer.status, 400, `${name}: 400`);
    t.match(answer.json, { ...expected, message: String }, `${name}: ${JSON.stringify(answer.json)}`);
  }
  t.equal((await server.post('{"ok":true}')).status, 202);
  await eventually(async () => (await server.metric('s3_events_stored_total')) === 1);
  const stored = (await s3.objects()).flatMap((o) => o.records.map((r) => r.event));
  t.same(stored, [{ ok: true }], 'all-or-nothing: no event of a rejected request was stored');
  t.equal((await server.post(nest(64))).status, 202, 'MAX_EVENT_DEPTH itself is fine');
  t.equal(await server.metric('http_requests_total', '{status="400"}'), cases.length);
});

t.test('unsupported media types and encodings get 415', async (t) => {
  const s3 = await startS3(t);
  const server = await startInProcess(t, s3.env);
  const types: Record<string, string>[] = [{ 'content-type': 'application/xml' }, { 'content-type': 'multipart/form-data' }, {}];
  for (const headers of types) {
    // A Buffer body, so fetch adds no Content-Type of its own.
    const answer = await server.post(Buffer.from('{"a":1}'), headers);
    t.equal(answer.status, 415, `415 for ${JSON.stringify(headers)}`);
    t.equal(answer.json.error, 'unsupported_media_type');
  }
  const br = await server.post('{"a":1}', { ...JSON_TYPE, 'content-encoding': 'br' });
  t.equal(br.status, 415);
  t.equal(br.json.error, 'unsupported_encoding');
});

t.test('MAX_BODY_BYTES on the wire: declared, and while streaming without a length', async (t) => {
  const s3 = await startS3(t);
  const server = await startInProcess(t, { ...s3.env, MAX_BODY_BYTES: '65536' });
  const declared = await server.post(`[${'{"pad":"xxxxxxxxxx"},'.repeat(4000)}{}]`);
  t.equal(declared.status, 413);
  t.equal(declared.json.error, 'body_too_large');

  // 32 MiB offered in chunks with no Content-Length, on a raw socket that keeps writing until the
  // server hangs up: the server answers once 64 KiB passed, and closes instead of buffering the
  // rest (after reading and dropping at most 8 x MAX_BODY_BYTES of it, for clients that write before they read).
  const streamed = await new Promise<{ status: number; body: string; chunks: number }>((resolve) => {
    const socket = net.connect(server.port, '127.0.0.1');
    let received = '';
    socket.setEncoding('utf8').on('data', (d: string) => (received += d));
    socket.on('error', () => {}); // EPIPE/ECONNRESET once the server has closed: expected
    socket.on('close', () => {
      const { status, body } = parseAnswer(received, true);
      resolve({ status, body, chunks: sent });
    });
    socket.write('POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n');
    const chunk = `4000\r\n${' '.repeat(0x4000)}\r\n`;
    // One chunk a tick, like a real client, so the answer is read as soon as it comes.
    let sent = 0;
    const pump = (): void => {
      if (received !== '' || socket.destroyed || sent++ === 2048) return;
      socket.write(chunk, () => setImmediate(pump));
    };
    pump();
  });
  t.equal(streamed.status, 413);
  t.equal(JSON.parse(streamed.body).error, 'body_too_large');
  t.ok(streamed.chunks < 2048, `answered and hung up after ${streamed.chunks} of 2048 chunks, before the body ended`);
  t.equal(await server.metric('http_requests_rejected_body_too_large_total'), 2);
  t.equal((await server.post('{"still":"serving"}')).status, 202, 'the server still serves');
});

t.test('MAX_BODY_BYTES after gunzip: a gzip bomb is refused without inflating it', async (t) => {
  const s3 = await startS3(t);
  const server = await startServer(t, s3.env);
  const inflated = 256 * 1024 * 1024;
  const bomb = await new Promise<Buffer>((resolve) => {
    const gzip = createGzip({ level: 9 });
    const parts: Buffer[] = [];
    gzip.on('data', (d: Buffer) => parts.push(d)).on('end', () => resolve(Buffer.concat(parts)));
    const zeros = Buffer.alloc(1024 * 1024, 0x20);
    for (let i = 0; i < inflated / zeros.length; i++) gzip.write(zeros);
    gzip.end();
  });
  t.ok(bomb.length < 1024 * 1024, `the bomb (${bomb.length} bytes) passes the wire limit`);
  const before = resetPeakRss(server.child.pid!);
  const answer = await server.post(bomb, { ...JSON_TYPE, 'content-encoding': 'gzip' });
  t.equal(answer.status, 413);
  t.match(answer.json, { error: 'body_too_large', message: /decompressed/ });
  const growth = peakRss(server.child.pid!) - before;
  t.ok(growth < inflated / 8, `peak RSS grew ${Math.round(growth / 1048576)} MiB, far below the ${inflated / 1048576} MiB the bomb inflates to`);
  t.equal(await server.metric('http_requests_rejected_body_too_large_total'), 1);

  const fine = gzipSync(JSON.stringify(Array.from({ length: 100 }, (_, i) => ({ i }))));
  t.equal((await server.post(fine, { ...JSON_TYPE, 'content-encoding': 'gzip' })).status, 202);
});

t.test('API_KEYS: 401 without a valid key; header, bearer and query keys accepted', async (t) => {
  const s3 = await startS3(t);
  const server = await startInProcess(t, { ...s3.env, API_KEYS: 'k1, k2' });
  const missing = await server.post('{}');
  t.equal(missing.status, 401);
  t.equal(missing.json.error, 'unauthorized');
  t.equal((await server.post('{}', { ...JSON_TYPE, 'x-api-key': 'wrong' })).status, 401);
  t.equal((await server.post('{}', { ...JSON_TYPE, 'x-api-key': 'k1' })).status, 202);
  t.equal((await server.post('{}', { ...JSON_TYPE, authorization: 'Bearer k2' })).status, 202);
  t.equal((await server.post('{}', { ...JSON_TYPE, authorization: 'bearer k2' })).status, 202, 'the scheme in any case');
  const beacon = await fetch(`${server.url}/v1/events?api_key=k2`, { method: 'POST', body: '{}', headers: { 'content-type': 'text/plain' } });
  t.equal(beacon.status, 202);
});

t.test('CORS_ORIGINS: preflight and response headers for allowed origins only', async (t) => {
  const s3 = await startS3(t);
  const server = await startInProcess(t, { ...s3.env, CORS_ORIGINS: 'https://app.example' });
  const preflight = await fetch(`${server.url}/v1/events`, { method: 'OPTIONS', headers: { origin: 'https://app.example' } });
  t.equal(preflight.status, 204);
  t.equal(preflight.headers.get('access-control-allow-origin'), 'https://app.example');
  t.match(preflight.headers.get('access-control-allow-methods'), /POST/);
  t.match(preflight.headers.get('access-control-allow-headers'), /content-encoding/);
  const allowed = await server.post('{}', { ...JSON_TYPE, origin: 'https://app.example' });
  t.equal(allowed.headers.get('access-control-allow-origin'), 'https://app.example');
  // A browser sends text/plain cross-origin without a preflight: the POST itself must be refused.
  const other = await server.post('{"from":"evil"}', { 'content-type': 'text/plain', origin: 'https://evil.example' });
  t.equal(other.status, 403);
  t.match(other.json, { error: 'origin_not_allowed', message: /CORS_ORIGINS/ });
  t.equal(other.headers.get('access-control-allow-origin'), null);
  t.equal((await server.post('{}')).status, 202, 'no Origin header (an SDK on a server): allowed');
  t.equal(await server.metric('http_requests_total', '{status="403"}'), 1);
});

t.test('without CORS_ORIGINS, any origin may post and read the answer (the default `*`)', async (t) => {
  const s3 = await startS3(t);
  const server = await startInProcess(t, s3.env);
  // Was 405 and no CORS header: the events were stored and the browser saw "Failed to fetch".
  const preflight = await fetch(`${server.url}/v1/events`, { method: 'OPTIONS', headers: { origin: 'https://app.example' } });
  t.same([preflight.status, preflight.headers.get('access-control-allow-origin'), preflight.headers.get('access-control-allow-credentials')], [204, 'https://app.example', 'true']);
  const answer = await server.post('{}', { ...JSON_TYPE, origin: 'https://app.example' });
  t.same([answer.status, answer.headers.get('access-control-allow-origin'), answer.headers.get('access-control-allow-credentials')], [202, 'https://app.example', 'true']);
});

t.test('clients that hang up mid-body: nothing stored from them, the server keeps serving', async (t) => {
  const s3 = await startS3(t);
  const server = await startInProcess(t, { ...s3.env, BATCH_MAX_AGE_MS: '100' });
  for (let i = 0; i < 20; i++) {
    await new Promise<void>((resolve) => {
      const socket = net.connect(server.port, '127.0.0.1', () => {
        socket.write(`POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"id":"torn`);
        setImmediate(() => socket.destroy());
      });
      socket.on('close', () => resolve());
    });
  }
  t.equal((await server.post('{"id":"whole"}')).status, 202);
  await eventually(async () => (await server.metric('s3_events_stored_total')) === 1);
  t.same((await s3.objects()).flatMap((o) => o.records.map((r) => r.event)), [{ id: 'whole' }]);
  t.ok(server.running(), 'still running');
});
