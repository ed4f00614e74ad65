// The HTTP front under hostile or odd clients: early answers, malformed requests, pipelining
// without reading, the body budget and the connection cap (at the fd limit: fd-limit.ops.test.ts;
// the 413 read by fetch, Python and curl: front-limits.ops.test.ts). The servers run in the
// test's process, except where its memory is read.
import net from 'node:net';
import t from 'tap';
import { startInProcess } from '../helpers/in-process.js';
import { idleConnections, peakRss, postHead, rawRequest, resetPeakRss } from '../helpers/raw.js';
import { startS3 } from '../helpers/s3.js';
import { eventually, startServer } from '../helpers/server.js';

t.test('Content-Length: too large to frame, not a number, or two different ones', async (t) => {
  const s3 = await startS3(t);
  const server = await startInProcess(t, s3.env);
  for (const length of ['4294967295', '4294967296', '18446744073709551615', '1000000000']) {
    const answer = await rawRequest(server.port, `${postHead(`content-length: ${length}\r\n`)}{}`);
    t.equal(answer.status, 413, `content-length ${length}: 413`);
    t.match(JSON.parse(answer.body), { error: 'body_too_large' });
    t.ok(answer.closed, 'and closed');
  }
  t.equal(await server.metric('http_requests_rejected_body_too_large_total'), 4);
  // An empty first one hid a second from the check: uWS framed an empty body, a proxy might not.
  for (const lengths of [['abc'], ['-1'], ['0x10'], ['2', '3'], ['', '2']]) {
    const answer = await rawRequest(server.port, `${postHead(lengths.map((l) => `content-length: ${l}\r\n`).join(''))}{}`);
    t.equal(answer.status, 400, `content-length ${lengths.join(' and ')}: 400`);
    t.match(JSON.parse(answer.body), { error: 'invalid_content_length' });
    t.ok(answer.closed, 'and closed');
  }
  t.equal(await server.metric('http_requests_total', '{status="400"}'), 5);
  const twiceTheSame = await rawRequest(server.port, `${postHead('content-length: 2\r\ncontent-length: 2\r\n')}{}`, 1000);
  t.equal(twiceTheSame.status, 202, 'the same length twice is harmless');
});

t.test('malformed requests uWS rejects before any handler are answered by it and closed', async (t) => {
  const s3 = await startS3(t);
  const server = await startInProcess(t, s3.env);
  const manyHeaders = Array.from({ length: 120 }, (_, i) => `x-h${i}: v\r\n`).join('');
  const cases: [string, string][] = [
    ['HTTP/1.0 without Host', 'POST /v1/events HTTP/1.0\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}'],
    ['bare LF line endings', 'POST /v1/events HTTP/1.1\nhost: x\ncontent-type: application/json\ncontent-length: 2\n\n{}'],
    ['120 headers', `${postHead(`${manyHeaders}content-length: 2\r\n`)}{}`],
  ];
  const answers = await Promise.all(cases.map(([, request]) => rawRequest(server.port, request, 15_000)));
  const expected = ['505 HTTP Version Not Supported', '505 HTTP Version Not Supported', '431 Request Header Fields Too Large'];
  cases.forEach(([name], i) => {
    t.ok(answers[i]!.closed, `${name}: closed, not left hanging`);
    t.match(answers[i]!.text, new RegExp(`^HTTP/1\\.1 ${expected[i]}\r\nConnection: close\r\n`), `${name}: uWS answers ${expected[i]}`);
  });
  t.equal((await server.post('{}')).status, 202, 'the server still serves');
});

t.test('a client that pipelines requests and never reads the answers is hung up on', async (t) => {
  const s3 = await startS3(t);
  // A process of its own: its peak RSS is read.
  const server = await startServer(t, s3.env);
  const before = resetPeakRss(server.child.pid!);
  const outcome = await new Promise<{ sent: number; closed: boolean }>((resolve) => {
    const socket = net.connect(server.port, '127.0.0.1');
    socket.pause(); // never read
    const burst = Buffer.from('GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n'.repeat(1000));
    let sent = 0;
    const finish = (closed: boolean): void => {
      socket.destroy();
      resolve({ sent, closed });
    };
    socket.on('error', () => {});
    socket.on('close', () => finish(true));
    const pump = (): void => {
      if (socket.destroyed) return;
      if (sent >= 2_000_000) return finish(false);
      sent += 1000;
      if (socket.write(burst)) setImmediate(pump);
      else socket.once('drain', pump);
    };
    pump();
  });
  t.ok(outcome.closed, `closed after ${outcome.sent} pipelined requests, before 2,000,000`);
  const grown = peakRss(server.child.pid!) - before;
  t.ok(grown < 64 * 1024 * 1024, `peak RSS grew by ${Math.round(grown / 1048576)} MiB (answers are not buffered without bound)`);
  t.equal((await fetch(`${server.url}/healthz`)).status, 200, 'the server still serves');
});

t.test('a body declared large and dripped holds what it has sent, not what it declared', async (t) => {
  const s3 = await startS3(t);
  const server = await startInProcess(t, { ...s3.env, MAX_BODY_BYTES: '1048576', MAX_BODIES_IN_FLIGHT_BYTES: '4194304' });
  // Eight clients declaring 1 MiB each would take 8 MiB at once, twice the budget; having sent a
  // byte each, they hold one first buffer each.
  const drips = Array.from({ length: 8 }, () => {
    const socket = net.connect(server.port, '127.0.0.1');
    socket.on('error', () => {});
    socket.write(`${postHead('content-length: 1048576\r\n')}[`);
    return socket;
  });
  t.teardown(() => drips.forEach((s) => s.destroy()));
  await eventually(async () => (await server.metric('http_bodies_in_flight_bytes')) === 8 * 16 * 1024);
  // A body in pieces still fits beside them.
  const body = `[{"a":"${'x'.repeat(160_000)}"}]`;
  const socket = net.connect(server.port, '127.0.0.1');
  let answer = '';
  socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
  socket.write(`${postHead(`content-length: ${body.length}\r\n`)}${body.slice(0, 1000)}`);
  await new Promise((resolve) => setTimeout(resolve, 100));
  socket.end(body.slice(1000));
  await eventually(() => answer.includes('\r\n\r\n'));
  t.match(answer, /^HTTP\/1\.1 202 /, answer.slice(0, 300));
  t.equal(await server.metric('http_requests_rejected_busy_total'), 0);
});

t.test('MAX_CONNECTIONS: past it new connections are closed at once, counted, and taken again when some go', async (t) => {
  const s3 = await startS3(t);
  const server = await startInProcess(t, { ...s3.env, MAX_CONNECTIONS: '5' });
  const idle = idleConnections(t, server.port, 20);
  await eventually(() => idle.closedByServer() === 15);
  const capped = await server.waitForLog((l) => l.msg === 'connection cap reached: closing new connections');
  t.equal(capped.cap, 5);
  // A scrape goes to METRICS_PORT: not a connection of the ingest port.
  idle.destroy();
  await eventually(async () => (await server.metric('http_connections_open')) === 0);
  t.equal(await server.metric('http_connections_refused_total'), 15);
  t.equal((await server.post('{}')).status, 202);
});
