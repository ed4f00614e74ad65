// Every answer of the front: its status line and headers as the flags say, each counted by status;
// an answer with CLOSE goes out at once and ends later; FLUSH_NOW survives uWS's hang-up on a
// request it cannot frame; an answer the client does not take closes the connection. Real
// uWebSockets.js app, real sockets.
import net from 'node:net';
import t, { type Test } from 'tap';
import type { HttpResponse } from 'uWebSockets.js';
import { DEFAULT_HTTP_IDLE_TIMEOUT_S } from '../../src/config/table.js';
import * as R from '../../src/ingest/respond.js';
import { uWS } from '../../src/ingest/uws.js';
import { HttpCounts } from '../../src/metrics/http.js';
import { rawRequest } from '../helpers/raw.js';
import { listenApp } from '../helpers/uws-app.js';

/** A server whose every request is answered by `answer`; GET with `connection: close`, read until closed. */
async function answering(t: Test, answer: (res: HttpResponse, respond: R.Responder) => void, keepAliveS?: number) {
  const counts = new HttpCounts();
  const respond = new R.Responder(counts, keepAliveS);
  const port = await listenApp(
    t,
    uWS.App().any('/*', (res) => answer(res, respond)),
  );
  const get = (request = 'GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n') => rawRequest(port, request, 2000);
  return { counts, port, get };
}

const header = (text: string, name: string): string | undefined => new RegExp(`^${name}: (.*)$`, 'mi').exec(text.split('\r\n\r\n')[0]!)?.[1]?.trim();

t.test('send: the status line, a JSON body with its length, counted under its status', async (t) => {
  const { counts, get } = await answering(t, (res, respond) => respond.send(res, '202', '{"accepted":3}'));
  const answer = await get();
  t.match(answer.text, /^HTTP\/1\.1 202 Accepted\r\n/);
  t.equal(header(answer.text, 'content-type'), 'application/json');
  t.equal(header(answer.text, 'content-length'), '14');
  t.equal(answer.body, '{"accepted":3}');
  for (const absent of ['allow', 'retry-after', 'access-control-allow-origin', 'access-control-allow-credentials', 'vary', 'connection']) t.equal(header(answer.text, absent), undefined, `no ${absent} header`);
  await get();
  t.equal(counts.requests['202'], 2, 'each answer counted');
  t.equal(counts.requests['200'], 0, 'under its own status only');
});

t.test('every status has its reason phrase', async (t) => {
  const statuses = ['200', '202', '204', '400', '401', '403', '404', '405', '409', '413', '415', '422', '500', '503'] as const;
  const lines = ['200 OK', '202 Accepted', '204 No Content', '400 Bad Request', '401 Unauthorized', '403 Forbidden', '404 Not Found', '405 Method Not Allowed', '409 Conflict', '413 Payload Too Large', '415 Unsupported Media Type', '422 Unprocessable Content', '500 Internal Server Error', '503 Service Unavailable'];
  let next = 0;
  const { counts, get } = await answering(t, (res, respond) => respond.sendRaw(res, statuses[next++]!, []));
  for (const line of lines) t.match((await get()).text, new RegExp(`^HTTP/1\\.1 ${line}\r\n`), line);
  t.same(Object.values(counts.requests), Array(statuses.length).fill(1), 'one of each, counted');
});

t.test('send: allow, retry-after, and an allowed origin echoed with vary', async (t) => {
  const { get } = await answering(t, (res, respond) => respond.send(res, '503', R.QUEUE_FULL, 'https://app.example', R.RETRY_AFTER, 'POST'));
  const answer = await get();
  t.equal(answer.status, 503);
  t.equal(header(answer.text, 'allow'), 'POST');
  t.equal(header(answer.text, 'retry-after'), '1');
  t.equal(header(answer.text, 'access-control-allow-origin'), 'https://app.example');
  t.equal(header(answer.text, 'vary'), 'origin');
  t.equal(header(answer.text, 'access-control-allow-credentials'), 'true', 'a beacon (credentialed) may read it');
  t.equal(header(answer.text, 'access-control-expose-headers'), 'retry-after, idempotent-replayed', 'and a script may read Retry-After');
  t.same(JSON.parse(answer.body), { error: 'queue_full', message: 'the event channel is full; retry after the Retry-After delay' });
});

t.test('send with REPLAYED: idempotent-replayed: true (an Idempotency-Key repeat)', async (t) => {
  const { get } = await answering(t, (res, respond) => respond.send(res, '202', '{"accepted":1}', '', R.REPLAYED));
  const answer = await get();
  t.equal(answer.status, 202);
  t.equal(header(answer.text, 'idempotent-replayed'), 'true');
});

t.test('send with CLOSE: the answer goes out at once, with connection: close, and the caller ends it later', async (t) => {
  let ended: HttpResponse | undefined;
  const { port } = await answering(t, (res, respond) => {
    res.onAborted(() => {});
    respond.send(res, '413', R.errorBody('body_too_large', 'x'), '', R.CLOSE);
    ended = res;
  });
  const socket = net.connect(port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  let received = '';
  socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
  /** Resolves once what the server sent ends with `tail`. */
  const receivedUpTo = (tail: string): Promise<void> =>
    new Promise((resolve) => {
      const check = (): void => (received.endsWith(tail) ? resolve() : void socket.once('data', check));
      check();
    });
  // No connection: close from the client: the server alone says the connection ends.
  socket.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
  await receivedUpTo('"message":"x"}');
  t.match(received, /^HTTP\/1\.1 413 Payload Too Large\r\n/, 'the status is out before the answer ends');
  t.equal(header(received, 'connection'), 'close', 'the client is told to hang up');
  t.equal(header(received, 'transfer-encoding'), 'chunked', 'sent as it is written, without a length');
  ended!.cork(() => ended!.end(''));
  await receivedUpTo('}\r\n0\r\n\r\n');
  t.pass('end() terminates the chunked answer');
});

t.test('send with FLUSH_NOW: the answer reaches a client uWS hangs up on right after the handler', async (t) => {
  const { get } = await answering(t, (res, respond) => respond.send(res, '400', R.INVALID_LENGTH, '', R.FLUSH_NOW));
  // A Content-Length uWS cannot frame: it closes the connection as soon as the handler returns.
  const answer = await get('POST / HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n{}');
  t.equal(answer.status, 400);
  t.ok(answer.closed);
  t.same(JSON.parse(answer.body), { error: 'invalid_content_length', message: 'Content-Length must be one decimal number, sent once' }, 'the JSON, padded with spaces');
});

t.test('send: an answer the client does not take is not buffered: the connection is closed', async (t) => {
  const big = `"${'x'.repeat(32 * 1024 * 1024)}"`;
  const { counts, port } = await answering(t, (res, respond) => respond.send(res, '200', big));
  const socket = net.connect(port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  socket.pause(); // reads nothing until the server has answered
  let bytes = 0;
  let head = '';
  socket.on('data', (d: Buffer) => {
    if (bytes === 0) head = d.toString('latin1', 0, 20);
    bytes += d.length;
  });
  const ended = new Promise((resolve) => socket.on('close', resolve));
  socket.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
  // The handler has run once the answer is counted; then whatever the kernel took is read.
  while (counts.requests['200'] === 0) await new Promise((resolve) => setImmediate(resolve));
  socket.resume();
  await ended;
  t.match(head, /^HTTP\/1\.1 200 OK/);
  t.ok(bytes < big.length, `the client got ${bytes} of ${big.length} bytes, then the connection closed`);
});

t.test('Keep-Alive: timeout=N on every answer that keeps its connection, none on those that close it', async (t) => {
  const flags = [0, R.RETRY_AFTER, R.CLOSE, R.FLUSH_NOW];
  let next = 0;
  const { get } = await answering(
    t,
    (res, respond) => {
      const flag = flags[next++];
      if (flag === undefined) return respond.sendRaw(res, '204', []);
      respond.send(res, '400', '{}', '', flag);
      if (flag === R.CLOSE) res.end('');
    },
    17,
  );
  const keepAlive = async () => header((await get()).text, 'keep-alive');
  t.equal(await keepAlive(), 'timeout=17', 'send');
  t.equal(await keepAlive(), 'timeout=17', 'send with RETRY_AFTER');
  t.equal(await keepAlive(), undefined, 'CLOSE: the connection ends after it');
  t.equal(await keepAlive(), undefined, 'FLUSH_NOW: uWS closes the connection');
  t.equal(await keepAlive(), 'timeout=17', 'sendRaw');
  const { get: byDefault } = await answering(t, (res, respond) => respond.send(res, '202', '{}'));
  t.equal(header((await byDefault()).text, 'keep-alive'), `timeout=${DEFAULT_HTTP_IDLE_TIMEOUT_S}`, 'HTTP_IDLE_TIMEOUT_S\'s default unless told');
});

t.test('sendRaw: any headers and body, counted', async (t) => {
  const { counts, get } = await answering(t, (res, respond) => respond.sendRaw(res, '200', [['content-type', 'text/plain; version=0.0.4'], ['x-extra', 'yes']], 'metric 1\n'));
  const answer = await get();
  t.equal(answer.status, 200);
  t.equal(header(answer.text, 'content-type'), 'text/plain; version=0.0.4');
  t.equal(header(answer.text, 'x-extra'), 'yes');
  t.equal(answer.body, 'metric 1\n');
  t.equal(counts.requests['200'], 1);
});

t.test('the error bodies are JSON with an error code and a message', async (t) => {
  const bodies = { QUEUE_FULL: 'queue_full', NOT_STORED: 'not_stored', WAL_FAILED: 'not_stored', BUSY: 'busy', SHUTTING_DOWN: 'shutting_down', UNAUTHORIZED: 'unauthorized', ORIGIN_NOT_ALLOWED: 'origin_not_allowed', UNSUPPORTED_TYPE: 'unsupported_media_type', UNSUPPORTED_ENCODING: 'unsupported_encoding', INVALID_LENGTH: 'invalid_content_length', NOT_FOUND: 'not_found', METHOD_NOT_ALLOWED: 'method_not_allowed' } as const;
  for (const [name, error] of Object.entries(bodies)) t.match(JSON.parse(R[name as keyof typeof bodies]), { error, message: /\w/ }, name);
  t.equal(R.errorBody('a"b', 'say "hi"'), '{"error":"a\\"b","message":"say \\"hi\\""}', 'escaped as JSON');
});
