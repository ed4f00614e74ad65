// test:ops: the 413 an oversized body gets, read by every common client (fetch, Python's
// http.client, curl, curl chunked) at three sizes, three tries each: real client processes, so
// kept out of npm test's time; and MAX_BODIES_IN_FLIGHT_BYTES, which waits out the 5 s a refused
// body is read for (front-limits.test.ts has the rest of the front's limits).
import { execFile } from 'node:child_process';
import net from 'node:net';
import { promisify } from 'node:util';
import t from 'tap';
import { startInProcess } from '../helpers/in-process.js';
import { postHead, rawRequest } from '../helpers/raw.js';
import { startS3 } from '../helpers/s3.js';
import { eventually } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

const run = promisify(execFile);
const MB = 1_000_000;

// Python's http.client sends the whole body before it reads a byte of the answer: if the server
// closes while it still sends, it gets BrokenPipeError instead of the 413.
const PYTHON_POST = `
import http.client, sys
c = http.client.HTTPConnection('127.0.0.1', int(sys.argv[1]), timeout=20)
try:
    c.request('POST', '/v1/events', body=b' ' * int(sys.argv[2]), headers={'content-type': 'application/json'})
    r = c.getresponse()
    print(r.status, r.read().decode())
except Exception as e:
    print(0, type(e).__name__)
`;

t.test('413 over MAX_BODY_BYTES reaches fetch, Python http.client and curl, never a reset', async (t) => {
  const s3 = await startS3(t);
  const server = await startInProcess(t, s3.env);
  const dir = tempDir(t, 'bodies');
  const answers: string[] = [];
  for (const size of [1.1 * MB, 3 * MB, 8 * MB]) {
    const file = `${dir}/body-${size}`;
    await run('sh', ['-c', `head -c ${size} /dev/zero | tr '\\0' ' ' > ${file}`]);
    // Three tries each: the failure this guards against was a race that lost the answer most times, not always.
    for (let i = 0; i < 3; i++) {
      const viaFetch = await fetch(`${server.url}/v1/events`, { method: 'POST', body: new Uint8Array(size).fill(32), headers: { 'content-type': 'application/json' } })
        .then(async (r) => `${r.status} ${await r.text()}`)
        .catch((err: Error & { cause?: { code?: string } }) => `0 ${err.cause?.code ?? err.message}`);
      const viaPython = (await run('python3', ['-c', PYTHON_POST, String(server.port), String(size)])).stdout.trim();
      const curlArgs = ['-s', '-w', ' %{http_code}', '-X', 'POST', '-H', 'content-type: application/json', '--data-binary', `@${file}`];
      const viaCurl = (await run('curl', [...curlArgs, `${server.url}/v1/events`]).catch((err: { stdout: string }) => err)).stdout;
      const viaCurlChunked = (await run('curl', [...curlArgs, '-H', 'transfer-encoding: chunked', `${server.url}/v1/events`]).catch((err: { stdout: string }) => err)).stdout;
      answers.push(`fetch ${size}: ${viaFetch}`, `python ${size}: ${viaPython}`, `curl ${size}: ${viaCurl}`, `curl chunked ${size}: ${viaCurlChunked}`);
    }
  }
  const failed = answers.filter((a) => !/: 413 \{"error":"body_too_large"/.test(a) && !/: \{"error":"body_too_large".*\} 413$/.test(a));
  t.same(failed, [], `all ${answers.length} answers are a 413 with its JSON body`);
  t.equal(await server.metric('http_requests_rejected_body_too_large_total'), answers.length);
  t.equal((await server.post('{"still":"serving"}')).status, 202);
});

t.test('MAX_BODIES_IN_FLIGHT_BYTES: bodies being read beyond the budget get 503 busy and a hang-up', async (t) => {
  const s3 = await startS3(t);
  const server = await startInProcess(t, { ...s3.env, MAX_BODY_BYTES: '400000', MAX_BODIES_IN_FLIGHT_BYTES: '500000' });
  // A body of 400,000 bytes, three quarters sent and left waiting: its buffer holds at least what
  // was sent, 300,000 of the budget.
  const waiting = [0].map(() => {
    const socket = net.connect(server.port, '127.0.0.1');
    socket.on('error', () => {});
    socket.write(`${postHead('content-length: 400000\r\n')}[${' '.repeat(300_000)}`);
    return socket;
  });
  t.teardown(() => waiting.forEach((s) => s.destroy()));
  await eventually(async () => (await server.metric('http_bodies_in_flight_bytes')) >= 300_000);
  // It sends no more: the server drops what it would discard after 5 s, and hangs up.
  const third = await rawRequest(server.port, `${postHead('content-length: 400000\r\n')}[${' '.repeat(300_000)}`, 10_000);
  t.equal(third.status, 503, 'the third does not fit');
  t.match(JSON.parse(third.body), { error: 'busy' });
  t.match(third.text, /retry-after: 1/i);
  t.ok(third.closed, 'and its connection is closed');
  t.equal(await server.metric('http_requests_rejected_busy_total'), 1);
  waiting.forEach((s) => s.destroy());
  // Their budget comes back when they go.
  await eventually(async () => (await server.metric('http_bodies_in_flight_bytes')) === 0);
  t.equal((await server.post(`[${' '.repeat(300_000)}{}]`)).status, 202);
});
