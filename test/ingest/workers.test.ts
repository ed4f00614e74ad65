// IngestWorkers with two real worker threads behind a listening IngestServer, in the test's
// process, with an intake the test scripts: connections go to the workers in turn, each with its
// share of MAX_CONNECTIONS; every request is accepted on the main thread and answered as the
// intake says, now or later; the intake's state reaches the workers without a request; /metrics
// is rendered here; a worker's crash is reported once and it gets no more connections; after
// beginShutdown both refuse; close() sends the answers owed, then every thread ends.
//
// The build: IngestWorkers starts its threads on worker.js beside it, which exists in dist/ only
// (as for test/helpers/in-process.ts).
import t from 'tap';
import type * as ConfigModule from '../../src/config.js';
import { IngestServer, type MetricsPage } from '../../src/ingest/server.js';
import type * as WorkersModule from '../../src/ingest/workers.js';
import { HttpCounts } from '../../src/metrics/http.js';
import { answersIn, idleConnections, postOf, rawConnection } from '../helpers/raw.js';
import { eventually, ROOT } from '../helpers/server.js';
import { memoryLog } from '../helpers/log.js';
import { eventTexts, ScriptedIntake } from '../helpers/uws-app.js';

const { IngestWorkers } = (await import(`${ROOT}dist/ingest/workers.js`)) as typeof WorkersModule;
const { loadConfig } = (await import(`${ROOT}dist/config.js`)) as typeof ConfigModule;

const config = loadConfig({ METRICS_PORT: 'ingest', WORKERS: '2', MAX_CONNECTIONS: '6', LOG_LEVEL: 'silent', INSTANCE_ID: 'workers-test', MAX_EVENTS_PER_REQUEST: '10' });
const intake = new ScriptedIntake();
const { log, lines } = memoryLog();
let crashes = 0;
let render: () => Promise<MetricsPage> = () => Promise.resolve({ contentType: 'text/plain', body: 'up 1\n' });
// The main thread's server: it listens, and hands each new connection to a worker in turn.
const server = new IngestServer(config, intake, new HttpCounts(), () => render(), log, 'ingest port');
const { port } = await server.listen('127.0.0.1', 0);
const url = `http://127.0.0.1:${port}`;
const shared = IngestWorkers.sharedCounts(2);
const workers = await IngestWorkers.start({ config, server, intake, renderMetrics: () => render(), log, crashed: () => crashes++ }, shared.memory);
let ended: Promise<boolean> | undefined;
t.teardown(async () => {
  server.close();
  await (ended ?? workers.close(2000));
  server.closeConnections();
});

const post = async (body = '{}'): Promise<{ status: number; json: Record<string, unknown> }> => {
  const res = await fetch(`${url}/v1/events`, { method: 'POST', body, headers: { 'content-type': 'application/json', connection: 'close' } });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
};
const get = async (path: string): Promise<{ status: number; text: string }> => {
  const res = await fetch(`${url}${path}`, { headers: { connection: 'close' } });
  return { status: res.status, text: await res.text() };
};
const answered = (worker: number): number => shared.counts[worker]!.requests['202'];

t.test('requests over new connections reach the intake on this thread through both workers, and are answered as it says', async (t) => {
  for (let i = 0; i < 4; i++) t.same(await post(`[{"n":${i}},{"m":${i}}]`), { status: 202, json: { accepted: 2 } });
  t.same(
    intake.entries.map((e) => eventTexts(e)),
    [0, 1, 2, 3].map((i) => [`{"n":${i}}`, `{"m":${i}}`]),
    'every request whole, in order, its events as sent',
  );
  t.ok(intake.entries.every((e) => e.count === 2 && e.bytes === e.body.length), 'counted as the front counts them');
  t.same([answered(0), answered(1)], [2, 2], 'connections go to each worker in turn');
  t.equal(shared.counts[0]!.eventsAccepted + shared.counts[1]!.eventsAccepted, 8);

  intake.outcome = 'full';
  t.match(await post(), { status: 503, json: { error: 'queue_full' } });
  intake.outcome = 'stored';
  t.same(await post(), { status: 202, json: { accepted: 1, stored: 's3' } });
  intake.outcome = 'accepted';
});

t.test('each worker takes its share of MAX_CONNECTIONS', async (t) => {
  const idle = idleConnections(t, port, 10);
  await eventually(() => idle.closedByServer() === 4, 2000, 5);
  t.same(
    shared.counts.map((c) => c.connectionsOpen),
    [3, 3],
    'three each, six in all',
  );
  t.same(
    shared.counts.map((c) => c.connectionsRefused),
    [2, 2],
    'the rest refused by the workers themselves',
  );
  idle.destroy();
  await eventually(() => shared.counts.every((c) => c.connectionsOpen === 0), 2000, 5);
});

t.test("the intake's state reaches the workers after a push, and while none comes", async (t) => {
  // The push that fills the channel: the state published after it refuses the next request in the worker.
  intake.onAccept = () => (intake.admission = 'full');
  t.equal((await post()).status, 202);
  const taken = intake.entries.length;
  t.match(await post(), { status: 503, json: { error: 'queue_full' } });
  t.equal(intake.entries.length, taken, 'refused by the worker: nothing reached the intake');
  intake.onAccept = () => {};
  // The channel empties with no request: published on a timer.
  intake.admission = 'ok';
  await eventually(async () => (await post()).status === 202, 200, 5);
  t.pass('taken again');
});

t.test("the main thread's unready reason reaches every worker's /readyz, and its end too", async (t) => {
  workers.unready({ error: 's3_misconfigured', message: 'S3 said no' });
  // Each new connection goes to the next worker: four in a row reach both.
  await eventually(async () => (await get('/readyz')).status === 503, 200, 5);
  for (let i = 0; i < 4; i++) t.same(await get('/readyz'), { status: 503, text: '{"error":"s3_misconfigured","message":"S3 said no"}' }, `connection ${i}`);
  workers.unready(undefined);
  await eventually(async () => (await get('/readyz')).status === 200, 200, 5);
  for (let i = 0; i < 4; i++) t.equal((await get('/readyz')).status, 200, `connection ${i}`);
});

t.test('/metrics from a worker is rendered on this thread: the page, or 500', async (t) => {
  t.same(await get('/metrics'), { status: 200, text: 'up 1\n' });
  render = () => Promise.reject(new Error('registry broke'));
  t.equal((await get('/metrics')).status, 500);
  render = () => Promise.resolve({ contentType: 'text/plain', body: 'up 1\n' });
});

t.test('answered later: the answer goes to the worker that asked, after the intake says', async (t) => {
  intake.outcome = 'pending';
  const pending = post('[{},{},{}]');
  await eventually(() => intake.answers.length === 1, 2000, 5);
  intake.answers.shift()!('spilled');
  t.same(await pending, { status: 202, json: { accepted: 3, stored: 'dlq' } });
  intake.outcome = 'accepted';
});


t.test('on a worker: pipelined requests answered in order; a half-close answered; two in one packet neither handed over nor answered', async (t) => {
  intake.outcome = 'pending';
  const taken = intake.entries.length;
  const { socket, seen } = rawConnection(t, port);
  socket.write(postOf('{"p":1}'));
  await eventually(() => intake.answers.length === 1, 2000, 5);
  socket.write(postOf('{"p":2}'));
  intake.answers.shift()!('accepted');
  await eventually(() => intake.answers.length === 1, 2000, 5);
  intake.answers.shift()!('accepted');
  await eventually(() => answersIn(seen.text).length === 2, 2000, 5);
  t.same(answersIn(seen.text).map((a) => a.slice(0, 3)), ['202', '202'], 'both answered, in order');
  t.same(intake.entries.slice(taken).map((e) => eventTexts(e)), [['{"p":1}'], ['{"p":2}']]);

  const fin = rawConnection(t, port);
  fin.socket.end(postOf('{"p":3}'));
  await eventually(() => intake.answers.length === 1, 2000, 5);
  intake.answers.shift()!('accepted');
  await eventually(() => fin.seen.closed, 2000, 5);
  t.same(answersIn(fin.seen.text).map((a) => a.slice(0, 3)), ['202'], 'the half-closed client answered');

  const withdrawn = shared.counts[0]!.requestsWithdrawn + shared.counts[1]!.requestsWithdrawn;
  const cut = rawConnection(t, port);
  cut.socket.write(postOf('{"p":4}') + postOf('{"p":5}'));
  await eventually(() => cut.seen.closed, 2000, 5);
  await eventually(() => shared.counts[0]!.requestsWithdrawn + shared.counts[1]!.requestsWithdrawn === withdrawn + 1, 2000, 5);
  t.equal(cut.seen.text, '', 'no answer');
  t.equal(intake.entries.length, taken + 3, 'nothing of it reached the main thread');
  intake.outcome = 'accepted';
});

t.test('a worker that crashes is reported once, and gets no more connections', async (t) => {
  // An intake that answers twice (a bug of its own) makes the worker fail on the second answer, for real.
  intake.outcome = 'pending';
  const doubled = post();
  await eventually(() => intake.answers.length === 1, 2000, 5);
  const twice = intake.answers.shift()!;
  twice('accepted');
  twice('accepted');
  t.equal((await doubled).status, 202, 'the first answer went out');
  await eventually(() => lines.some((l) => l.level === 60), 2000, 5);
  const fatal = lines.find((l) => l.level === 60);
  t.match(fatal, { msg: 'worker thread crashed: shutting down', worker: Number, err: /TypeError/ });
  t.equal(crashes, 1, 'the server is told, once');
  intake.outcome = 'accepted';
  for (let i = 0; i < 4; i++) t.equal((await post()).status, 202, `connection ${i} served by the other`);
  t.equal(crashes, 1, 'still once, though the thread has ended since');
});

t.test('after beginShutdown every request is refused; close() sends the answers owed, then every thread ends', async (t) => {
  intake.outcome = 'pending';
  const owed = post('[{"last":true}]');
  await eventually(() => intake.answers.length === 1, 2000, 5);
  workers.beginShutdown();
  t.match(await post(), { status: 503, json: { error: 'shutting_down' } });
  t.match(JSON.parse((await get('/readyz')).text), { error: 'shutting_down' });
  // Answered and closed in the same turn: the answer is sent before the thread is told to close.
  intake.answers.shift()!('accepted');
  ended = workers.close();
  t.equal(await ended, true, 'every thread ended');
  t.same(await owed, { status: 202, json: { accepted: 1 } }, 'the answer owed reached its client');
  t.equal(await workers.close(), true, 'again, later: it only waits');
});
