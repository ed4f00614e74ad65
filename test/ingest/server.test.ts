// The front's routes and listeners, on real ports: POST /v1/events to the intake, /healthz,
// /readyz through start, readiness, a failed WAL and the shutdown, /metrics where it is placed
// (and a failed or abandoned render), 404 and 405; an exclusive port, close(), closeConnections(),
// the connection cap, and a child app taking the port's new connections.
import net from 'node:net';
import t, { type Test } from 'tap';
import type { MetricsPage } from '../../src/ingest/server.js';
import { type IngestOptions, IngestServer, type MetricsPlace } from '../../src/ingest/server.js';
import { HttpCounts } from '../../src/metrics/http.js';
import { idleConnections, rawRequest } from '../helpers/raw.js';
import { eventually } from '../helpers/server.js';
import { memoryLog } from '../helpers/log.js';
import { ScriptedIntake } from '../helpers/uws-app.js';

const OPTIONS: IngestOptions = { maxBodyBytes: 10_000, maxEventsPerRequest: 10, maxEventDepth: 8, maxBodiesInFlightBytes: 1 << 20, maxConnections: undefined, apiKeys: [], corsOrigins: [], httpIdleTimeoutS: 65 };
const PAGE: MetricsPage = { contentType: 'text/plain; version=0.0.4; charset=utf-8', body: 'up 1\n' };

interface Started {
  server: IngestServer;
  intake: ScriptedIntake;
  counts: HttpCounts;
  lines: ReturnType<typeof memoryLog>['lines'];
  url: string;
  port: number;
  metricsPort: number;
  /** The next /metrics render: the page, or how it fails; a promise the test settles itself. */
  render: () => Promise<MetricsPage>;
}

/** An IngestServer listening on 127.0.0.1 port 0 (and a metrics port of its own when so placed); stopped at teardown. */
async function start(t: Test, metrics: MetricsPlace = 'ingest port', options: Partial<IngestOptions> = {}, listen = true): Promise<Started> {
  const intake = new ScriptedIntake();
  const counts = new HttpCounts();
  const { log, lines } = memoryLog();
  const started = { render: () => Promise.resolve(PAGE) } as Started;
  const server = new IngestServer({ ...OPTIONS, ...options }, intake, counts, () => started.render(), log, metrics);
  t.teardown(() => {
    server.close();
    server.closeConnections();
  });
  const ports = listen ? await server.listen('127.0.0.1', 0) : { port: 0, metricsPort: 0 };
  return Object.assign(started, { server, intake, counts, lines, url: `http://127.0.0.1:${ports.port}`, ...ports });
}

const get = async (url: string, init: RequestInit = {}): Promise<{ status: number; text: string; headers: Headers }> => {
  const res = await fetch(url, { ...init, headers: { connection: 'close', ...init.headers } });
  return { status: res.status, text: await res.text(), headers: res.headers };
};

t.test('the routes: events to the intake, health, 404, and 405 naming the method allowed', async (t) => {
  const { intake, url, counts } = await start(t);
  const posted = await get(`${url}/v1/events`, { method: 'POST', body: '[{"a":1},{"b":2}]', headers: { 'content-type': 'application/json' } });
  t.same([posted.status, posted.text], [202, '{"accepted":2}']);
  t.equal(intake.entries.length, 1, 'the events went to the intake');
  t.equal((await get(`${url}/healthz`)).text, '{"status":"ok"}');
  const notFound = await get(`${url}/v2/events`);
  t.same([notFound.status, JSON.parse(notFound.text).error], [404, 'not_found']);
  const getEvents = await get(`${url}/v1/events`);
  t.same([getEvents.status, getEvents.headers.get('allow'), JSON.parse(getEvents.text).error], [405, 'POST', 'method_not_allowed']);
  const postHealth = await get(`${url}/healthz`, { method: 'POST', body: 'x' });
  t.same([postHealth.status, postHealth.headers.get('allow')], [405, 'GET']);
  t.same([counts.requests['202'], counts.requests['200'], counts.requests['404'], counts.requests['405']], [1, 1, 1, 2], 'every answer counted');
});

t.test('OPTIONS /v1/events is the preflight, with CORS_ORIGINS or without (any origin)', async (t) => {
  const { url } = await start(t, 'ingest port', { corsOrigins: ['https://app.example'] });
  const preflight = await get(`${url}/v1/events`, { method: 'OPTIONS', headers: { origin: 'https://app.example' } });
  t.same([preflight.status, preflight.headers.get('access-control-allow-origin')], [204, 'https://app.example']);
  // Was 405: a browser's fetch of JSON was never sent (issue 23).
  const open = await start(t, 'ingest port', { corsOrigins: [] });
  const any = await get(`${open.url}/v1/events`, { method: 'OPTIONS', headers: { origin: 'https://app.example' } });
  t.same([any.status, any.headers.get('access-control-allow-origin')], [204, 'https://app.example']);
});

t.test('/readyz: starting, ready, a failed WAL, the pipeline closed, and the shutdown', async (t) => {
  const { server, intake, url } = await start(t);
  const ready = async (): Promise<[number, string]> => {
    const answer = await get(`${url}/readyz`);
    return [answer.status, (JSON.parse(answer.text) as { error?: string; status?: string }).error ?? JSON.parse(answer.text).status];
  };
  t.same(await ready(), [503, 'starting'], 'not ready until marked');
  server.markReady();
  t.same(await ready(), [200, 'ready']);
  intake.admission = 'full';
  t.same(await ready(), [200, 'ready'], 'a full channel is back-pressure, not unreadiness');
  intake.admission = 'not_stored';
  t.same(await ready(), [503, 'not_stored'], 'the WAL failed: nothing sent here can be acknowledged');
  intake.admission = 'closed';
  t.same(await ready(), [503, 'shutting_down'], 'the intake closed (a worker thread sees the shutdown there first)');
  intake.admission = 'ok';
  server.beginShutdown();
  t.same(await ready(), [503, 'shutting_down']);
  const posted = await get(`${url}/v1/events`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
  t.same([posted.status, JSON.parse(posted.text).error], [503, 'shutting_down'], 'and POST too');
  t.same(intake.entries, []);
});

t.test('/readyz: unready(reason) answers 503 with it while otherwise ready, POST unaffected; unready(undefined) ends it', async (t) => {
  const { server, intake, url } = await start(t);
  server.markReady();
  server.unready({ error: 's3_misconfigured', message: 'S3 said no' });
  const answer = await get(`${url}/readyz`);
  t.same([answer.status, JSON.parse(answer.text)], [503, { error: 's3_misconfigured', message: 'S3 said no' }]);
  const posted = await get(`${url}/v1/events`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
  t.equal(posted.status, 202, 'events still accepted: they spill to the DLQ if S3 refuses them');
  t.equal(intake.entries.length, 1);
  server.beginShutdown();
  t.equal(JSON.parse((await get(`${url}/readyz`)).text).error, 'shutting_down', 'the shutdown says so first');
  const { server: other, url: otherUrl } = await start(t);
  other.markReady();
  other.unready({ error: 's3_misconfigured', message: 'S3 said no' });
  other.unready(undefined);
  t.same(await get(`${otherUrl}/readyz`).then((a) => [a.status, a.text]), [200, '{"status":"ready"}']);
});

t.test('HTTP_IDLE_TIMEOUT_S: every answer on either port says Keep-Alive: timeout=N', async (t) => {
  const { url, metricsPort } = await start(t, 'own port', { httpIdleTimeoutS: 42 });
  for (const path of ['/healthz', '/readyz', '/v1/events', '/nowhere']) t.equal((await get(`${url}${path}`)).headers.get('keep-alive'), 'timeout=42', path);
  t.equal((await get(`http://127.0.0.1:${metricsPort}/metrics`)).headers.get('keep-alive'), 'timeout=42', '/metrics');
});

t.test('/metrics on the ingest port: the page rendered, or 500 and a log line when rendering fails', async (t) => {
  const started = await start(t);
  const page = await get(`${started.url}/metrics`);
  t.same([page.status, page.headers.get('content-type'), page.text], [200, PAGE.contentType, PAGE.body]);
  t.equal(started.metricsPort, started.port, 'no port of its own');
  started.render = () => Promise.reject(new Error('registry broke'));
  t.equal((await get(`${started.url}/metrics`)).status, 500);
  t.match(started.lines, [{ level: 50, msg: 'rendering /metrics failed', err: { message: 'registry broke' } }]);
  t.equal((await get(`${started.url}/metrics`, { method: 'POST', body: '' })).status, 405);
});

t.test('/metrics for a client gone before the page is ready: nothing is written', async (t) => {
  const started = await start(t);
  let release: ((page: MetricsPage) => void) | undefined;
  started.render = () => new Promise((resolve) => (release = resolve));
  const socket = net.connect(started.port, '127.0.0.1');
  socket.on('error', () => {});
  socket.write('GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n');
  await eventually(() => release !== undefined, 2000, 5);
  socket.destroy();
  // A whole request after the hang-up: uWS has seen it go.
  t.equal((await get(`${started.url}/healthz`)).status, 200);
  // Writing to a response uWS has aborted would throw from here.
  release!(PAGE);
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(started.counts.requests['200'], 1, 'only /healthz was answered');
});

t.test('METRICS_PORT: /metrics there and only there; elsewhere: on neither', async (t) => {
  const own = await start(t, 'own port');
  t.not(own.metricsPort, own.port);
  t.equal((await get(`http://127.0.0.1:${own.metricsPort}/metrics`)).text, PAGE.body);
  t.equal((await get(`http://127.0.0.1:${own.metricsPort}/v1/events`, { method: 'POST', body: '{}' })).status, 404, 'the metrics port serves nothing else');
  t.equal((await get(`${own.url}/metrics`)).status, 404, 'not on the ingest port');
  const elsewhere = await start(t, 'elsewhere');
  t.equal((await get(`${elsewhere.url}/metrics`)).status, 404, 'served by another thread');
});

t.test('the port is exclusive: a second server on it fails to listen, naming it', async (t) => {
  const first = await start(t);
  const second = await start(t, 'ingest port', {}, false);
  await t.rejects(second.server.listen('127.0.0.1', first.port), { message: `cannot listen on 127.0.0.1:${first.port}: the port is in use (another server?) or not allowed` });
  t.equal((await get(`${first.url}/healthz`)).status, 200, 'the first still serves');
});

t.test('close() stops listening, once or twice; open connections are served until closeConnections()', async (t) => {
  const { server, port, url } = await start(t);
  const kept = net.connect(port, '127.0.0.1');
  t.teardown(() => kept.destroy());
  let received = '';
  kept.on('data', (d: Buffer) => (received += d.toString('latin1')));
  const keptClosed = new Promise((resolve) => kept.on('close', resolve));
  kept.write('GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n');
  await eventually(() => received.includes('{"status":"ok"}'), 2000, 5);
  server.close();
  server.close();
  await t.rejects(fetch(`${url}/healthz`), 'no new connection');
  kept.write('GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n');
  await eventually(() => received.split('{"status":"ok"}').length === 3, 2000, 5);
  t.pass('a connection already open is still served');
  server.closeConnections();
  await keptClosed;
  t.pass('closeConnections closes it');
});

t.test('MAX_CONNECTIONS: the cap applies to the ingest port', async (t) => {
  const { port, counts } = await start(t, 'ingest port', { maxConnections: 2 });
  const idle = idleConnections(t, port, 4);
  await eventually(() => idle.closedByServer() === 2, 2000, 5);
  t.equal(counts.connectionsRefused, 2);
  t.equal((await rawRequest(port, 'GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n', 2000)).closed, true, 'one more is closed at once');
});

t.test('a child app takes the new connections of the port, until removed; a closed child closes those handed to it', async (t) => {
  const main = await start(t);
  const child = await start(t, 'elsewhere', {}, false);
  main.intake.outcome = 'accepted';
  const post = async (): Promise<number> => (await get(`${main.url}/v1/events`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })).status;
  main.server.addChild(child.server.descriptor());
  t.equal(await post(), 202);
  t.equal(await post(), 202);
  t.same([main.intake.entries.length, child.intake.entries.length], [0, 2], "the child's intake took them");
  main.server.removeChild(child.server.descriptor());
  t.equal(await post(), 202);
  t.same([main.intake.entries.length, child.intake.entries.length], [1, 2], 'the port serves them itself again');

  main.server.addChild(child.server.descriptor());
  child.server.closeConnections();
  const answer = await rawRequest(main.port, 'GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n', 2000);
  t.same([answer.status, answer.closed], [0, true], 'a connection handed to a closed child is closed at once');
});
