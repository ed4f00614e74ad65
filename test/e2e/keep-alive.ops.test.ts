// test:ops: HTTP_IDLE_TIMEOUT_S for real, on a raw socket, against the server in this process:
// an idle keep-alive connection is kept at least N s after an answer (a request sent then is
// answered on it), and closed by the server within N + 8 s (uWebSockets.js counts in 4 s ticks);
// every answer says `Keep-Alive: timeout=N`. Ops only: it waits out the timeout, twice.
import t from 'tap';
import { startInProcess } from '../helpers/in-process.js';
import { rawConnection } from '../helpers/raw.js';
import { startS3 } from '../helpers/s3.js';
import { eventually } from '../helpers/server.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const HEALTHZ = 'GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n';

for (const seconds of [3, 6]) {
  t.test(`HTTP_IDLE_TIMEOUT_S=${seconds}: kept ${seconds} s idle, closed within ${seconds + 8} s`, async (t) => {
    const s3 = await startS3(t);
    const server = await startInProcess(t, { ...s3.env, HTTP_IDLE_TIMEOUT_S: String(seconds) });
    const { socket, seen } = rawConnection(t, server.port);
    socket.write(HEALTHZ);
    await eventually(() => seen.text.includes('{"status":"ok"}'));
    t.match(seen.text, new RegExp(`\r\nkeep-alive: timeout=${seconds}\r\n`, 'i'));
    await sleep(seconds * 1000);
    t.notOk(seen.closed, `still open after ${seconds} s idle`);
    socket.write(HEALTHZ);
    await eventually(() => seen.text.split('{"status":"ok"}').length === 3);
    const answeredAt = Date.now();
    t.pass('a request after the wait is answered on the same connection');
    await eventually(() => seen.closed, (seconds + 10) * 10, 100);
    const idleMs = Date.now() - answeredAt;
    t.ok(idleMs >= seconds * 1000, `closed by the server ${idleMs} ms after the last answer, not before ${seconds} s`);
    t.ok(idleMs <= (seconds + 8) * 1000 + 500, `and within ${seconds + 8} s`);
  });
}
