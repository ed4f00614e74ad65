// Pipelining and half-close against the real server in this process, on raw sockets (node:net):
// the checks of test/e2e/pipelining.test.ts and pipelining.ops.test.ts, one server per WORKERS and
// ACK_LEVEL. See those files and docs/api.md "Keep-alive, pipelining and half-close".
import net from 'node:net';
import type { Test } from 'tap';
import { startInProcess, type InProcessServer } from '../helpers/in-process.js';
import type { S3Server } from '../helpers/s3.js';
import { eventually } from '../helpers/server.js';

const postOf = (body: string): string => `POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`;
/** Each answer in `text` as `status body`, in order. */
const answers = (text: string): string[] =>
  [...text.matchAll(/HTTP\/1\.1 (\d{3})[^]*?\r\ncontent-length: (\d+)\r\n\r\n/gi)].map((m) => `${m[1]} ${text.slice(m.index + m[0].length, m.index + m[0].length + Number(m[2]))}`);

function connect(t: Test, port: number): { socket: net.Socket; seen: { text: string; closed: boolean } } {
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  t.teardown(() => socket.destroy());
  const seen = { text: '', closed: false };
  socket.on('data', (d: Buffer) => (seen.text += d.toString('latin1')));
  socket.on('error', () => {});
  socket.on('close', () => (seen.closed = true));
  return { socket, seen };
}

/** Runs the checks at one WORKERS and ACK_LEVEL, on a server of its own, against `s3`. */
export function pipeliningAt(t: Test, s3: S3Server, workers: '1' | '2', ackLevel: 'memory' | 'disk' | 's3'): void {
    const storedIds = async (): Promise<string[]> => (await s3.objects()).flatMap((o) => o.records.map((r) => String(r.event.id))).sort();
    const answeredLater = workers !== '1' || ackLevel !== 'memory';
    const stored = ackLevel === 's3' ? ',"stored":"s3"' : '';
    t.test(`WORKERS=${workers} ACK_LEVEL=${ackLevel}`, async (t) => {
      // Batches cut by age: at ACK_LEVEL=s3 a request waits that long in the channel for its answer.
      const server: InProcessServer = await startInProcess(t, { ...s3.env, BATCH_MAX_AGE_MS: '200', WORKERS: workers, ACK_LEVEL: ackLevel, S3_PREFIX: `w${workers}-${ackLevel}` });
      const tag = `w${workers}-${ackLevel}`;

      await t.test('a request pipelined behind one in flight: both answered 202, in order, on the one connection', async (t) => {
        const { socket, seen } = connect(t, server.port);
        socket.write(postOf(`{"id":"${tag}-a"}`));
        // Once the server has read the first (in the channel, or already answered), the second.
        await eventually(async () => seen.text !== '' || (await server.metric('channel_events')) > 0, 400, 5);
        socket.write(postOf(`[{"id":"${tag}-b"},{"id":"${tag}-c"}]`));
        await eventually(() => answers(seen.text).length === 2 || seen.closed, 400, 10);
        t.same(answers(seen.text), [`202 {"accepted":1${stored}}`, `202 {"accepted":2${stored}}`]);
        t.notOk(seen.closed, 'kept alive');
      });

      await t.test('a request, then a half-close (FIN): answered 202, then closed', async (t) => {
        const { socket, seen } = connect(t, server.port);
        socket.end(postOf(`{"id":"${tag}-d"}`));
        await eventually(() => seen.closed, 400, 10);
        t.same(answers(seen.text), [`202 {"accepted":1${stored}}`]);
      });

      await t.test(answeredLater ? 'two requests in one packet: closed by uWS, neither stored nor answered, counted' : 'two requests in one packet: both answered, in order', async (t) => {
        const withdrawn = await server.metric('http_requests_withdrawn_total');
        const { socket, seen } = connect(t, server.port);
        socket.write(postOf(`{"id":"${tag}-e"}`) + postOf(`{"id":"${tag}-f"}`));
        if (!answeredLater) {
          await eventually(() => answers(seen.text).length === 2, 400, 10);
          t.same(answers(seen.text), ['202 {"accepted":1}', '202 {"accepted":1}']);
          return;
        }
        await eventually(() => seen.closed, 400, 10);
        t.equal(seen.text, '', 'no answer');
        t.equal(await server.metric('http_requests_withdrawn_total'), withdrawn + 1, 'the first withdrawn, counted');
      });

      t.equal(await server.metric('http_answers_lost_total', '{reason="client_gone"}'), 0, 'no answer lost');
      t.same(await server.stop(), { code: 0, signal: null });
      const ids = (await storedIds()).filter((id) => id.startsWith(`${tag}-`));
      t.same(ids, ['a', 'b', 'c', 'd', ...(answeredLater ? [] : ['e', 'f'])].map((x) => `${tag}-${x}`), 'in S3: what was answered 202, once; nothing of the cut connection');
    });
}
