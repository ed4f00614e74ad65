// A worker thread of the HTTP front (src/ingest/worker.ts), started for real, with this test in
// the main thread's part: its app taken as a child of a listening IngestServer, it hands each
// parsed request over (the body transferred) and answers the client only once told; it heeds the
// published admission state and its share of the bodies budget, asks for /metrics, answers 503
// after 'shutdown', reports a bug of its own as 'crashed' and then refuses new requests but keeps
// its connections (a request handed over before the crash gets its answer), and ends
// on 'close'.
import { Worker } from 'node:worker_threads';
import t from 'tap';
import type { Outcome } from '../../src/acks.js';
import { IngestServer } from '../../src/ingest/server.js';
import type { FromWorker, PushItem, ToWorker, WorkerSetup } from '../../src/ingest/workers.js';
import { HttpCounts, SHARED_COUNTS_BYTES, sharedHttpCounts } from '../../src/metrics/http.js';
import { eventually } from '../helpers/server.js';
import { memoryLog } from '../helpers/log.js';
import { ScriptedIntake } from '../helpers/uws-app.js';

const setup: WorkerSetup = {
  index: 3,
  // As IngestWorkers gives it: answered later, and a budget of 100 bytes for bodies awaiting their
  // answer: one request of 60 can wait for the main thread, not two.
  options: { maxBodyBytes: 10_000, maxEventsPerRequest: 10, maxEventDepth: 8, maxBodiesInFlightBytes: 100, maxConnections: undefined, apiKeys: [], corsOrigins: [], httpIdleTimeoutS: 65, answersLater: true, maxBodiesAwaitingBytes: 100 },
  metricsOnIngestPort: true,
  logLevel: 'silent',
  instanceId: 'worker-test',
  counts: new SharedArrayBuffer(SHARED_COUNTS_BYTES),
  state: new SharedArrayBuffer(3 * Float64Array.BYTES_PER_ELEMENT),
};
const counts = sharedHttpCounts(setup.counts);
const state = new Float64Array(setup.state);

// The main thread's listening server; connections reach it only once the worker's app is its child.
const main = new IngestServer(setup.options, new ScriptedIntake(), new HttpCounts(), () => Promise.reject(new Error('not here')), memoryLog().log, 'elsewhere');
const { port } = await main.listen('127.0.0.1', 0);
const url = `http://127.0.0.1:${port}`;
t.teardown(() => {
  main.close();
  main.closeConnections();
});

// The worker inherits this process's loaders (type stripping, test/node-hooks.mjs) with its execArgv.
const worker = new Worker(new URL('../../src/ingest/worker.ts', import.meta.url), { workerData: setup });
const exited = new Promise<number>((resolve) => worker.once('exit', resolve));
t.teardown(async () => {
  await worker.terminate();
});
const messages: FromWorker[] = [];
worker.on('message', (message: FromWorker) => messages.push(message));
const tell = (message: ToWorker): void => worker.postMessage(message);

/** The next message of this type from the worker (taken from the queue). */
async function next<T extends FromWorker['type']>(type: T): Promise<Extract<FromWorker, { type: T }>> {
  await eventually(() => messages.some((m) => m.type === type), 2000, 5);
  return messages.splice(
    messages.findIndex((m) => m.type === type),
    1,
  )[0] as Extract<FromWorker, { type: T }>;
}

const post = async (body: string): Promise<{ status: number; json: Record<string, unknown> }> => {
  const res = await fetch(`${url}/v1/events`, { method: 'POST', body, headers: { 'content-type': 'application/json', connection: 'close' } });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
};
const get = async (path: string): Promise<{ status: number; text: string }> => {
  const res = await fetch(`${url}${path}`, { headers: { connection: 'close' } });
  return { status: res.status, text: await res.text() };
};
const events = (item: PushItem): string[] => Array.from({ length: item.spans.length / 2 }, (_, i) => Buffer.from(item.body).toString('utf8', item.spans[2 * i], item.spans[2 * i + 1]));
const answer = (item: PushItem, outcome: Outcome): void => tell({ type: 'answers', ids: [item.id], outcomes: [outcome] });

const ready = await next('ready');
main.addChild(ready.descriptor);

t.test('a request is handed over whole, its body transferred, and answered only once the main thread says', async (t) => {
  const before = Date.now();
  const answered = post('[{"id":1},{"id":2}]');
  const { items } = await next('push');
  t.equal(items.length, 1);
  const [item] = items;
  t.type(item!.body, ArrayBuffer, 'the body itself, handed over');
  t.same(events(item!), ['{"id":1}', '{"id":2}']);
  t.ok(item!.receivedAt >= before && item!.receivedAt <= Date.now());
  t.equal(counts.requests['202'], 0, 'not answered yet');
  answer(item!, 'accepted');
  t.same(await answered, { status: 202, json: { accepted: 2 } });
  t.equal(counts.requests['202'], 1, "the worker's counts, read from the shared memory");
  t.equal(counts.eventsAccepted, 2);

  const refused = post('{"id":3}');
  answer((await next('push')).items[0]!, 'full');
  t.match(await refused, { status: 503, json: { error: 'queue_full' } }, "the main thread's refusal is the answer");
  t.equal(counts.rejectedQueueFull, 1);
});

t.test("the main thread's published state: refusals before any hand-over, and readiness", async (t) => {
  state[0] = 1; // full
  t.match(await post('{}'), { status: 503, json: { error: 'queue_full' } });
  state[0] = 3; // not_stored
  t.match(JSON.parse((await get('/readyz')).text), { error: 'not_stored' }, 'a failed WAL: not ready');
  state[0] = 2; // closed
  t.match(JSON.parse((await get('/readyz')).text), { error: 'shutting_down' });
  state[0] = 0;
  t.same(JSON.parse((await get('/readyz')).text), { status: 'ready' }, 'ready from the start');
  t.equal(
    messages.filter((m) => m.type === 'push').length,
    0,
    'nothing handed over while refused',
  );
});

t.test("'unready': /readyz answers 503 with the reason while otherwise ready, until told it is over", async (t) => {
  tell({ type: 'unready', reason: { error: 's3_misconfigured', message: 'S3 said no' } });
  await eventually(async () => (await get('/readyz')).status === 503, 200, 5);
  t.same(JSON.parse((await get('/readyz')).text), { error: 's3_misconfigured', message: 'S3 said no' });
  tell({ type: 'unready', reason: undefined });
  await eventually(async () => (await get('/readyz')).status === 200, 200, 5);
  t.pass('ready again');
});

t.test('bodies awaiting their answer stay within their own budget: the next is refused at once, as awaiting_answers', async (t) => {
  const body = `{"pad":"${'x'.repeat(50)}"}`; // 60 bytes
  const queueFull = counts.rejectedQueueFull;
  const first = post(body);
  const { items } = await next('push');
  t.match(await post(body), { status: 503, json: { error: 'awaiting_answers' } }, 'no room for a second while the first waits');
  t.equal(counts.rejectedAwaitingAnswers, 1, 'counted as its own cause');
  t.equal(counts.rejectedQueueFull, queueFull, 'not as queue_full');
  t.equal(counts.bodiesAwaitingBytes, 60, 'the waiting body counts where waiting bodies are counted');
  t.equal(counts.bodiesInFlightBytes, 0, 'not among the bodies being read');
  answer(items[0]!, 'stored');
  t.same(await first, { status: 202, json: { accepted: 1, stored: 's3' } });
  t.equal(counts.bodiesAwaitingBytes, 0, 'given back once answered');
  const third = post(body);
  answer((await next('push')).items[0]!, 'spilled');
  t.same(await third, { status: 202, json: { accepted: 1, stored: 'dlq' } }, 'room again');
});

t.test('/metrics is asked of the main thread: its page, or 500', async (t) => {
  const page = get('/metrics');
  const asked = await next('metrics');
  tell({ type: 'metrics', id: asked.id, page: { contentType: 'text/plain', body: 'up 1\n' } });
  t.same(await page, { status: 200, text: 'up 1\n' });
  const failed = get('/metrics');
  tell({ type: 'metrics', id: (await next('metrics')).id, error: 'registry broke' });
  t.equal((await failed).status, 500);
});

t.test("a bug in the worker: reported as 'crashed'; it refuses new requests but keeps its connections: a request handed over before is answered", async (t) => {
  const waiting = post('{"w":1}');
  const { items } = await next('push');
  // An answer for a request it never handed over: the worker's own lookup fails, for real.
  tell({ type: 'answers', ids: [12345], outcomes: ['accepted'] });
  const crashed = await next('crashed');
  t.match(crashed.error, /TypeError/);
  t.match(await post('{}'), { status: 503, json: { error: 'shutting_down' } }, 'a new request is refused');
  answer(items[0]!, 'accepted');
  t.same(await waiting, { status: 202, json: { accepted: 1 } }, 'the request waiting at the crash gets its answer');
});

t.test("after 'shutdown': 503 shutting_down for POST and /readyz", async (t) => {
  tell({ type: 'shutdown' });
  await eventually(async () => (await get('/readyz')).status === 503, 200, 5);
  t.match(await post('{}'), { status: 503, json: { error: 'shutting_down' } });
  t.equal(
    messages.filter((m) => m.type === 'push').length,
    0,
    'nothing handed over',
  );
});

t.test("'close' ends the thread", async (t) => {
  main.removeChild(ready.descriptor);
  tell({ type: 'close' });
  t.equal(await exited, 0, 'the thread ends by itself, exit code 0');
});
