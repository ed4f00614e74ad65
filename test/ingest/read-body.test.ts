// Reading request bodies on a real uWebSockets.js app: a body that comes with its headers is
// handed over as is, one in pieces is gathered in one buffer grown as bytes arrive (counted
// against the bodies-in-flight budget, and given back); past MAX_BODY_BYTES or the budget the
// handler refuses, and the rest of the body is read and dropped within bounds, then the
// connection ends; a client that hangs up gives its budget back.
import net from 'node:net';
import t, { type Test } from 'tap';
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import { BodyBudget, type BodyLimits, BodyReader, discardBody } from '../../src/ingest/read-body.js';
import * as R from '../../src/ingest/respond.js';
import { uWS } from '../../src/ingest/uws.js';
import { HttpCounts } from '../../src/metrics/http.js';
import { eventually } from '../helpers/server.js';
import { listenApp } from '../helpers/uws-app.js';

/** Waits for what the server does next: checked every 5 ms, for up to 10 s. */
const soon = (check: () => boolean): Promise<void> => eventually(check, 2000, 5);

interface Seen {
  text: string;
  owned: boolean;
  /** The capacity of the memory the body is a view of. */
  memory: number;
  /** The budget in use while the handler ran. */
  inFlight: number;
  context: string;
}

/** An app whose POSTs are read by BodyReader; the handler notes what it got and answers. */
async function reading(t: Test, limits: Partial<BodyLimits> & { maxBodyBytes: number }, budgetBytes = 1 << 20) {
  const counts = new HttpCounts();
  const respond = new R.Responder(counts);
  const budget = new BodyBudget(budgetBytes, counts);
  const bodies: Seen[] = [];
  const refusals: string[] = [];
  const handler = {
    body(res: HttpResponse, body: Buffer, owned: boolean, context: string): void {
      bodies.push({ text: body.toString(), owned, memory: body.buffer.byteLength, inFlight: counts.bodiesInFlightBytes, context });
      respond.send(res, '202', `{"bytes":${body.length}}`);
    },
    refuse(res: HttpResponse, why: 'too_large' | 'busy', context: string): void {
      refusals.push(`${why} ${context}`);
      respond.send(res, why === 'busy' ? '503' : '413', `{"error":"${why}"}`, '', R.CLOSE);
    },
  };
  let next = 0;
  const app = uWS.App().post('/*', (res: HttpResponse, req: HttpRequest) => {
    const length = req.getHeader('content-length');
    new BodyReader(res, length === '' ? -1 : Number(length), { discardMaxBytes: 1 << 20, discardMaxMs: 5000, ...limits }, budget, handler, `request ${next++}`);
  });
  const port = await listenApp(t, app);
  return { counts, bodies, refusals, port };
}

/** A raw connection: what it received so far, and whether the server closed it. */
function connect(t: Test, port: number) {
  const socket = net.connect(port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  const state = { received: '', closed: false };
  socket.on('data', (d: Buffer) => (state.received += d.toString('latin1')));
  socket.on('error', () => {}); // a reset once the server hung up: what was read still counts
  socket.on('close', () => (state.closed = true));
  return {
    socket,
    state,
    /** Writes, and waits until the server has taken it (a tick of its loop). */
    write: (text: string) => new Promise<void>((resolve) => socket.write(text, () => resolve())),
  };
}

const head = (headers: string): string => `POST /v1/events HTTP/1.1\r\nhost: x\r\n${headers}\r\n`;

t.test('a body that comes whole with its headers is handed over as is, taking nothing from the budget', async (t) => {
  const { bodies, counts, port } = await reading(t, { maxBodyBytes: 1000 });
  const client = connect(t, port);
  await client.write(`${head('content-length: 9\r\n')}{"a":"b"}`);
  await soon(() => client.state.received.includes('{"bytes":9}'));
  t.match(bodies, [{ text: '{"a":"b"}', owned: false, inFlight: 0, context: 'request 0' }]);
  t.equal(counts.bodiesInFlightBytes, 0);
});

t.test('a body in pieces is gathered in one buffer of exactly its length, counted while read', async (t) => {
  const { bodies, counts, port } = await reading(t, { maxBodyBytes: 200_000 });
  const body = `[${'x'.repeat(99_998)}]`;
  const client = connect(t, port);
  await client.write(`${head(`content-length: ${body.length}\r\n`)}${body.slice(0, 100)}`);
  // It holds what it has been sent, not the 100,000 it declares: a first buffer of 16 KiB.
  await soon(() => counts.bodiesInFlightBytes === 16 * 1024);
  await client.write(body.slice(100, 10_100));
  await client.write(body.slice(10_100, 20_100));
  await soon(() => counts.bodiesInFlightBytes === 32 * 1024);
  t.pass('doubled once 16 KiB is not enough');
  await client.write(body.slice(20_100));
  await soon(() => bodies.length === 1);
  t.equal(bodies[0]!.text, body, 'every byte, in order');
  t.ok(bodies[0]!.owned, 'its own buffer, the parser may keep it');
  t.equal(bodies[0]!.memory, body.length, 'grown no further than the declared length');
  t.equal(bodies[0]!.inFlight, 0, 'given back to the budget before the handler runs');
});

t.test('a chunked body is read up to MAX_BODY_BYTES; a view of what arrived is handed over', async (t) => {
  const { bodies, counts, port } = await reading(t, { maxBodyBytes: 100_000 });
  const client = connect(t, port);
  await client.write(`${head('transfer-encoding: chunked\r\n')}5\r\n[{"a"\r\n`);
  await soon(() => counts.bodiesInFlightBytes === 16 * 1024);
  await client.write('4\r\n:1}]\r\n0\r\n\r\n');
  await soon(() => bodies.length === 1);
  t.match(bodies[0], { text: '[{"a":1}]', owned: false }, 'not owned: a view of a larger buffer');
  t.equal(counts.bodiesInFlightBytes, 0);
});

t.test('past MAX_BODY_BYTES: refused once, the rest read and dropped, then the answer ends', async (t) => {
  const { bodies, refusals, counts, port } = await reading(t, { maxBodyBytes: 1000 });
  const client = connect(t, port);
  await client.write(`${head('transfer-encoding: chunked\r\n')}${(800).toString(16)}\r\n${' '.repeat(800)}\r\n`);
  await client.write(`${(800).toString(16)}\r\n${' '.repeat(800)}\r\n`);
  await soon(() => client.state.received.includes('too_large'));
  t.match(client.state.received, /^HTTP\/1\.1 413 .*\r\n[^]*connection: close\r\n/i, 'answered while the client still sends');
  t.equal(counts.bodiesInFlightBytes, 0, 'its buffer given back at once');
  await client.write(`${(800).toString(16)}\r\n${' '.repeat(800)}\r\n`);
  await client.write('0\r\n\r\n');
  // The answer ends only once the body has: the rest of it was read, not cut off.
  await soon(() => client.state.received.endsWith('\r\n0\r\n\r\n'));
  t.notOk(client.state.closed, 'the connection stayed open for the rest of the body');
  t.same(refusals, ['too_large request 0']);
  t.same(bodies, [], 'the handler never saw the body');
});

t.test('a whole body over MAX_BODY_BYTES in its first piece: refused, and the answer ends at once', async (t) => {
  const { refusals, port } = await reading(t, { maxBodyBytes: 10 });
  const client = connect(t, port);
  await client.write(`${head('content-length: 20\r\n')}${'x'.repeat(20)}`);
  await soon(() => client.state.received.endsWith('\r\n0\r\n\r\n'));
  t.match(client.state.received, /^HTTP\/1\.1 413 /);
  t.same(refusals, ['too_large request 0']);
});

t.test('past the budget a body is refused as busy; the others go on, and everything is given back', async (t) => {
  // Room for one first buffer (16 KiB), not two.
  const { bodies, refusals, counts, port } = await reading(t, { maxBodyBytes: 100_000 }, 20_000);
  const first = connect(t, port);
  await first.write(`${head('content-length: 50000\r\n')}[`);
  await soon(() => counts.bodiesInFlightBytes === 16 * 1024);
  const second = connect(t, port);
  await second.write(`${head('content-length: 50000\r\n')}[`);
  await soon(() => second.state.received.includes('busy'));
  t.match(second.state.received, /^HTTP\/1\.1 503 /);
  t.same(refusals, ['busy request 1']);
  t.equal(counts.bodiesInFlightBytes, 16 * 1024, 'the refused body holds nothing');
  // The first cannot grow past the budget either: its next buffer would be 32 KiB.
  await first.write(`${' '.repeat(20_000)}`);
  await soon(() => refusals.length === 2);
  t.same(refusals, ['busy request 1', 'busy request 0']);
  t.equal(counts.bodiesInFlightBytes, 0);
  // Once the budget is free, a body in pieces is read again.
  const third = connect(t, port);
  await third.write(`${head('content-length: 7\r\n')}{"a"`);
  await third.write(':1}');
  await soon(() => bodies.length === 1);
  t.equal(bodies[0]!.text, '{"a":1}');
});

t.test('a client that hangs up mid-body gives its budget back, and its body goes nowhere', async (t) => {
  const { bodies, refusals, counts, port } = await reading(t, { maxBodyBytes: 100_000 });
  const client = connect(t, port);
  await client.write(`${head('content-length: 50000\r\n')}[${' '.repeat(1000)}`);
  await soon(() => counts.bodiesInFlightBytes === 16 * 1024);
  client.socket.destroy();
  await soon(() => counts.bodiesInFlightBytes === 0);
  t.same(bodies, []);
  t.same(refusals, []);
});

/** An app that answers every POST before reading its body, as post-events.ts's early answers do. */
async function answeringEarly(t: Test, limits: BodyLimits) {
  const respond = new R.Responder(new HttpCounts());
  const port = await listenApp(
    t,
    uWS.App().post('/*', (res) => {
      discardBody(res, limits);
      respond.send(res, '401', R.UNAUTHORIZED, '', R.CLOSE);
    }),
  );
  return port;
}

t.test('discardBody: the rest of an early-answered body is read and dropped, then the answer ends', async (t) => {
  const port = await answeringEarly(t, { maxBodyBytes: 1000, discardMaxBytes: 100_000, discardMaxMs: 5000 });
  const client = connect(t, port);
  await client.write(`${head('content-length: 30000\r\n')}${' '.repeat(10_000)}`);
  await soon(() => client.state.received.includes('unauthorized'));
  t.match(client.state.received, /^HTTP\/1\.1 401 /, 'answered before the body is in');
  await client.write(' '.repeat(20_000));
  await soon(() => client.state.received.endsWith('\r\n0\r\n\r\n'));
  t.pass('the answer ends once the body has');
});

t.test('discardBody: past its bytes, or its time, the connection is closed', async (t) => {
  const port = await answeringEarly(t, { maxBodyBytes: 1000, discardMaxBytes: 8000, discardMaxMs: 5000 });
  const flooding = connect(t, port);
  await flooding.write(`${head('content-length: 1000000\r\n')}${' '.repeat(4000)}`);
  await soon(() => flooding.state.received.includes('unauthorized'));
  await flooding.write(' '.repeat(20_000));
  await soon(() => flooding.state.closed);
  t.notOk(flooding.state.received.endsWith('\r\n0\r\n\r\n'), 'hung up on, the answer unterminated: the client has its status');

  const quickPort = await answeringEarly(t, { maxBodyBytes: 1000, discardMaxBytes: 100_000, discardMaxMs: 50 });
  const stalled = connect(t, quickPort);
  await stalled.write(`${head('content-length: 1000\r\n')}${' '.repeat(10)}`);
  await soon(() => stalled.state.closed);
  t.match(stalled.state.received, /^HTTP\/1\.1 401 /, 'a client that stops sending is hung up on after discardMaxMs');
});
