// Pipelining and half-close against the real server in this process, on raw sockets (node:net):
// the checks of test/e2e/pipelining.test.ts and pipelining.ops.test.ts, one server per WORKERS and
// ACK_LEVEL. See those files and docs/api.md "Keep-alive, pipelining and half-close".
import type { Test } from 'tap';
import { startInProcess, type InProcessServer } from '../helpers/in-process.js';
import type { S3Server } from '../helpers/s3.js';
import { answersIn, postOf, rawConnection } from '../helpers/raw.js';
import { eventually } from '../helpers/server.js';


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
        const { socket, seen } = rawConnection(t, server.port);
        socket.write(postOf(`{"id":"${tag}-a"}`));
        // Once the server has read the first (in the channel, or already answered), the second.
        await eventually(async () => seen.text !== '' || (await server.metric('channel_events')) > 0, 400, 5);
        socket.write(postOf(`[{"id":"${tag}-b"},{"id":"${tag}-c"}]`));
        await eventually(() => answersIn(seen.text).length === 2 || seen.closed, 400, 10);
        t.same(answersIn(seen.text), [`202 {"accepted":1${stored}}`, `202 {"accepted":2${stored}}`]);
        t.notOk(seen.closed, 'kept alive');
      });

      await t.test('a request, then a half-close (FIN): answered 202, then closed', async (t) => {
        const { socket, seen } = rawConnection(t, server.port);
        socket.end(postOf(`{"id":"${tag}-d"}`));
        await eventually(() => seen.closed, 400, 10);
        t.same(answersIn(seen.text), [`202 {"accepted":1${stored}}`]);
      });

      await t.test(answeredLater ? 'two requests in one packet: closed by uWS, neither stored nor answered, counted' : 'two requests in one packet: both answered, in order', async (t) => {
        const withdrawn = await server.metric('http_requests_withdrawn_total');
        const { socket, seen } = rawConnection(t, server.port);
        socket.write(postOf(`{"id":"${tag}-e"}`) + postOf(`{"id":"${tag}-f"}`));
        if (!answeredLater) {
          await eventually(() => answersIn(seen.text).length === 2, 400, 10);
          t.same(answersIn(seen.text), ['202 {"accepted":1}', '202 {"accepted":1}']);
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
