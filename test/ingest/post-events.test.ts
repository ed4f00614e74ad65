// POST /v1/events against its intake, on a real uWebSockets.js app: each request goes to the
// intake once, whole, as its events' bytes; the intake's outcome (now, or later) decides the
// answer and what is counted; a refusal by admits() comes before any parse; the checks before the
// body come in their order; a client gone before a later answer is counted, not written to.
import net from 'node:net';
import { gzipSync } from 'node:zlib';
import t, { type Test } from 'tap';
import { Access } from '../../src/ingest/access.js';
import { type EventsOptions, EventsRoute } from '../../src/ingest/post-events.js';
import { Responder } from '../../src/ingest/respond.js';
import { uWS } from '../../src/ingest/uws.js';
import { HttpCounts } from '../../src/metrics/http.js';
import { answersIn, parseAnswer, postOf, type RawAnswer, rawConnection, rawRequest } from '../helpers/raw.js';
import { eventually } from '../helpers/server.js';
import { memoryLog } from '../helpers/log.js';
import { eventTexts, listenApp, ScriptedIntake } from '../helpers/uws-app.js';

const OPTIONS: EventsOptions = { maxBodyBytes: 2000, maxEventsPerRequest: 5, maxEventDepth: 4, maxBodiesInFlightBytes: 1 << 20 };
const JSON_TYPE = { 'content-type': 'application/json' };

/** Sends a request on a connection of its own; resolves with the first answer once it is whole. */
async function exchange(t: Test, port: number, request: string): Promise<RawAnswer> {
  const socket = net.connect(port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
  socket.on('error', () => {});
  socket.write(request);
  const whole = (): boolean => {
    const split = text.indexOf('\r\n\r\n');
    if (split === -1) return false;
    const length = /^content-length: (\d+)\r$/im.exec(text.slice(0, split))?.[1];
    return length === undefined ? text.endsWith('\r\n0\r\n\r\n') : text.length >= split + 4 + Number(length);
  };
  await eventually(() => whole() || socket.destroyed, 2000, 5);
  return parseAnswer(text, socket.destroyed);
}

interface Answer {
  status: number;
  json: Record<string, unknown>;
  headers: Headers;
}

async function route(t: Test, { apiKeys = [] as string[], corsOrigins = [] as string[], maxBodiesInFlightBytes = OPTIONS.maxBodiesInFlightBytes, answersLater = false, maxBodiesAwaitingBytes = undefined as number | undefined } = {}) {
  const intake = new ScriptedIntake();
  const counts = new HttpCounts();
  const { log, lines } = memoryLog();
  const state = { shuttingDown: false };
  const events = new EventsRoute({ ...OPTIONS, maxBodiesInFlightBytes, answersLater, maxBodiesAwaitingBytes }, { shuttingDown: () => state.shuttingDown }, intake, counts, new Access(apiKeys, corsOrigins), new Responder(counts), log);
  const app = uWS.App()
    .post('/v1/events', events.post)
    .get('/*', (res) => {
      res.end('');
    });
  const port = await listenApp(t, app);
  /** A whole request and its answer on a connection of its own: the server's loop has turned. */
  const roundTrip = async (): Promise<void> => {
    await (await fetch(`http://127.0.0.1:${port}/`, { headers: { connection: 'close' } })).text();
  };
  const post = async (body: string | Buffer, headers: Record<string, string> = JSON_TYPE): Promise<Answer> => {
    const res = await fetch(`http://127.0.0.1:${port}/v1/events`, { method: 'POST', body: typeof body === 'string' ? body : new Uint8Array(body), headers });
    return { status: res.status, json: (await res.json()) as Record<string, unknown>, headers: res.headers };
  };
  return { intake, counts, lines, state, port, post, roundTrip, app };
}

t.test('a valid request goes to the intake once, whole, as its events bytes; accepted: 202 with the count', async (t) => {
  const { intake, counts, post } = await route(t);
  const before = Date.now();
  const answer = await post('[{"id":1},\n {"id":2, "s":"}"}]');
  t.equal(answer.status, 202);
  t.same(answer.json, { accepted: 2 });
  t.equal(intake.entries.length, 1, 'one entry per request');
  const [entry] = intake.entries;
  t.same(eventTexts(entry!), ['{"id":1}', '{"id":2, "s":"}"}'], 'each event as sent');
  t.equal(entry!.count, 2);
  t.equal(entry!.bytes, entry!.body.length, 'bytes: what the entry holds');
  t.ok(entry!.receivedAt >= before && entry!.receivedAt <= Date.now(), 'stamped as it is received');

  t.equal((await post(gzipSync('{"n":1}\n{"n":2}\n{"n":3}\n'), { 'content-type': 'application/x-ndjson', 'content-encoding': 'gzip' })).status, 202);
  t.same(eventTexts(intake.entries[1]!), ['{"n":1}', '{"n":2}', '{"n":3}'], 'NDJSON, gunzipped');
  t.equal(counts.eventsAccepted, 5, 'events accepted counted');
  t.equal(counts.requests['202'], 2);
});

t.test('what the intake says decides the answer: stored, spilled, full, closed, not_stored', async (t) => {
  const { intake, counts, lines, post } = await route(t);
  intake.outcome = 'stored';
  t.same((await post('[{},{}]')).json, { accepted: 2, stored: 's3' });
  intake.outcome = 'spilled';
  t.same((await post('{}')).json, { accepted: 1, stored: 'dlq' });
  t.equal(counts.eventsAccepted, 3, 'stored and spilled events are accepted');

  intake.outcome = 'full';
  intake.events = 7;
  intake.bytes = 70;
  const full = await post('{}');
  t.same([full.status, full.json.error, full.headers.get('retry-after')], [503, 'queue_full', '1']);
  t.equal(counts.rejectedQueueFull, 1);
  intake.outcome = 'closed';
  const closed = await post('{}');
  t.same([closed.status, closed.json.error, closed.headers.get('retry-after')], [503, 'shutting_down', null], 'shutting down: another instance, no retry here');
  intake.outcome = 'not_stored';
  const notStored = await post('{}');
  t.same([notStored.status, notStored.json.error, notStored.headers.get('retry-after')], [503, 'not_stored', '1']);
  t.equal(counts.eventsAccepted, 3, 'no refused event counted as accepted');
  t.equal(counts.rejectedQueueFull, 1, 'only full is a queue_full rejection');
  t.equal(counts.requests['503'], 3);
  t.match(
    lines.filter((l) => l.msg === 'queue full (drop)'),
    [{ level: 40, rejected: 1, channelEvents: 7, channelBytes: 70 }],
    'the queue_full refusal logged, with the channel',
  );
});

t.test('queue_full is logged at most once in 10 s, counting the refusals since', async (t) => {
  const { intake, counts, lines, post } = await route(t);
  intake.admission = 'full';
  for (let i = 0; i < 4; i++) t.equal((await post('{}')).json.error, 'queue_full');
  t.equal(counts.rejectedQueueFull, 4);
  t.equal(lines.filter((l) => l.msg === 'queue full (drop)').length, 1, 'one line for four refusals');
});

t.test('a refusal by admits() comes before the body is parsed, whatever the body', async (t) => {
  const { intake, post } = await route(t);
  intake.admission = 'full';
  const answer = await post('{not json at all');
  t.same([answer.status, answer.json.error], [503, 'queue_full'], 'not a 400: the body was never parsed');
  intake.admission = 'closed';
  t.equal((await post('{}')).json.error, 'shutting_down');
  intake.admission = 'not_stored';
  t.equal((await post('{}')).json.error, 'not_stored');
  t.same(intake.entries, [], 'nothing reached the intake');
});

t.test('refused at its headers when admits() says so: the body is dropped as it arrives, not kept, and the connection stays open', async (t) => {
  // A bound on bodies in flight smaller than the body: a body that was read and kept would meet it
  // at its first piece (503 busy, connection closed) before the refusal it deserves.
  const { intake, counts, port, roundTrip } = await route(t, { maxBodiesInFlightBytes: 1024 });
  intake.admission = 'full';
  const { socket, seen } = rawConnection(t, port);
  const body = `[${Array.from({ length: 5 }, (_, i) => `{"n":${i},"pad":"${'x'.repeat(280)}"}`).join(',')}]`;
  t.ok(body.length > 1024 && body.length <= OPTIONS.maxBodyBytes);
  socket.write(`POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body.slice(0, 100)}`);
  await roundTrip();
  t.equal(seen.text, '', 'no answer before the whole body is in');
  t.equal(counts.bodiesInFlightBytes, 0, 'nothing of it held');
  socket.write(body.slice(100));
  await eventually(() => answersIn(seen.text).length === 1, 2000, 5);
  const answer = parseAnswer(seen.text, seen.closed);
  t.equal(answer.status, 503);
  t.same(JSON.parse(answer.body), { error: 'queue_full', message: 'the event channel is full; retry after the Retry-After delay' }, 'the documented body');
  const head = answer.text.slice(0, answer.text.indexOf('\r\n\r\n'));
  t.match(head, /^retry-after: 1\r$/im);
  t.notMatch(head, /^connection: close/im, 'kept alive');
  // The same connection takes the next request once the channel has room.
  intake.admission = 'ok';
  socket.write(postOf('{"n":9}'));
  await eventually(() => answersIn(seen.text).length === 2, 2000, 5);
  t.same(answersIn(seen.text)[1], '202 {"accepted":1}');
  t.notOk(seen.closed);
  t.same(intake.entries.map(eventTexts), [['{"n":9}']], 'only the accepted request reached the intake');
  t.same([counts.rejectedQueueFull, counts.rejectedBusy, counts.eventsAccepted], [1, 0, 1]);
});

t.test('a bad body never reaches the intake', async (t) => {
  const { intake, counts, post } = await route(t);
  t.match(await post('[{},{},"x"]'), { status: 400, json: { error: 'not_an_object', index: 2 } });
  t.match(await post('[{},{},{},{},{},{}]'), { status: 400, json: { error: 'too_many_events' } }, 'MAX_EVENTS_PER_REQUEST');
  t.match(await post('{"a":{"b":{"c":{"d":{}}}}}'), { status: 400, json: { error: 'too_deep' } }, 'MAX_EVENT_DEPTH');
  t.match(await post('{}', { ...JSON_TYPE, 'content-encoding': 'gzip' }), { status: 400, json: { error: 'invalid_gzip' } });
  t.match(await post(gzipSync(`[${'{},'.repeat(700)}{}]`), { ...JSON_TYPE, 'content-encoding': 'gzip' }), { status: 413, json: { error: 'body_too_large' } }, 'MAX_BODY_BYTES once gunzipped');
  t.same(intake.entries, []);
  t.equal(counts.rejectedBodyTooLarge, 1);
  t.equal(counts.requests['400'], 4);
});

t.test('bodies streamed past MAX_BODY_BYTES, or past the bodies budget, are refused and counted as such', async (t) => {
  const { intake, counts, port } = await route(t, { corsOrigins: ['https://app.example'], maxBodiesInFlightBytes: 1000 });
  const open = (head: string) => {
    const socket = net.connect(port, '127.0.0.1');
    t.teardown(() => socket.destroy());
    socket.on('error', () => {});
    const seen = { text: '' };
    socket.on('data', (d: Buffer) => (seen.text += d.toString('latin1')));
    socket.write(`POST /v1/events HTTP/1.1\r\nhost: x\r\norigin: https://app.example\r\ncontent-type: application/json\r\n${head}\r\n`);
    return { socket, seen };
  };
  // Chunked, so that only the bytes tell: 2100 of them pass MAX_BODY_BYTES (2000).
  const long = open('transfer-encoding: chunked\r\n');
  long.socket.write(`834\r\n[${' '.repeat(2098)}]\r\n`);
  await eventually(() => long.seen.text.includes('body_too_large'), 2000, 5);
  t.match(long.seen.text, /^HTTP\/1\.1 413 [^]*access-control-allow-origin: https:\/\/app\.example\r\n/i, '413, with the allowed origin');
  t.equal(counts.rejectedBodyTooLarge, 1);
  // A body of 1500 declared, in pieces: its buffer would take 1500 of a budget of 1000.
  const big = open('content-length: 1500\r\n');
  big.socket.write('[');
  await eventually(() => big.seen.text.includes('"busy"'), 2000, 5);
  t.match(big.seen.text, /^HTTP\/1\.1 503 [^]*retry-after: 1\r\n/i, '503 busy, retry after a second');
  t.equal(counts.rejectedBusy, 1);
  t.same(intake.entries, []);
});

t.test('answered later: the answer waits for the intake, and goes out once it says', async (t) => {
  const { intake, counts, port, roundTrip } = await route(t);
  intake.outcome = 'pending';
  const socket = net.connect(port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  let received = '';
  socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
  socket.write('POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n[{},{}]');
  await eventually(() => intake.answers.length === 1, 2000, 5);
  await roundTrip();
  t.equal(received, '', 'nothing sent while the intake has not answered');
  t.equal(counts.eventsAccepted, 0);
  intake.answers[0]!('stored');
  await eventually(() => received.includes('\r\n\r\n{'), 2000, 5);
  t.match(received, /^HTTP\/1\.1 202 Accepted\r\n[^]*\{"accepted":2,"stored":"s3"\}$/);
  t.equal(counts.eventsAccepted, 2);
});

t.test('answered later, its connection closed by the server meanwhile: its events are counted, nothing is written, the loss is counted and logged', async (t) => {
  const { intake, counts, lines, port, app } = await route(t);
  intake.outcome = 'pending';
  const { socket, seen } = rawConnection(t, port);
  socket.write(postOf('{}'));
  await eventually(() => intake.answers.length === 1, 2000, 5);
  // What a worker thread does to its connections when it crashes. (A client's own FIN or reset is
  // not seen while its request waits: the connection is paused, and the answer is written.)
  app.close();
  await eventually(() => seen.closed, 2000, 5);
  // Writing to a response uWS has aborted would throw here.
  intake.answers[0]!('accepted');
  t.equal(counts.eventsAccepted, 1, 'the intake took them: counted');
  t.equal(counts.requests['202'], 0, 'but no answer written');
  t.equal(seen.text, '');
  t.equal(counts.answersLostClientGone, 1, 'stored without an answer: counted');
  t.match(
    lines.filter((l) => l.msg === 'answers lost: clients gone before their events were acknowledged'),
    [{ level: 40, lost: 1 }],
    'and logged',
  );
});


for (const answersLater of [false, true]) {
  const how = answersLater ? 'handed over at the end of the turn (answersLater)' : 'handed over at once';
  t.test(`${how}: a request pipelined behind one answered later is read once that one is answered; each gets its answer, in order`, async (t) => {
    const { intake, counts, port, roundTrip } = await route(t, { answersLater });
    intake.outcome = 'pending';
    const { socket, seen } = rawConnection(t, port);
    socket.write(postOf('[{"n":1}]'));
    await eventually(() => intake.answers.length === 1, 2000, 5);
    socket.write(postOf('[{"n":2},{"n":3}]'));
    await roundTrip();
    t.equal(intake.entries.length, 1, 'the second is not read while the first waits');
    t.notOk(seen.closed, 'the connection is kept');
    intake.answers[0]!('stored');
    await eventually(() => intake.answers.length === 2, 2000, 5);
    intake.answers[1]!('accepted');
    await eventually(() => answersIn(seen.text).length === 2, 2000, 5);
    t.same(answersIn(seen.text), ['202 {"accepted":1,"stored":"s3"}', '202 {"accepted":2}'], 'both answered, in order');
    t.same(intake.entries.map(eventTexts), [['{"n":1}'], ['{"n":2}', '{"n":3}']]);
    t.equal(counts.eventsAccepted, 3);
    t.notOk(seen.closed, 'kept alive after both');
  });

  t.test(`${how}: a client that half-closes (FIN) after its request still gets the answer`, async (t) => {
    const { intake, counts, port, roundTrip } = await route(t, { answersLater });
    intake.outcome = 'pending';
    const { socket, seen } = rawConnection(t, port);
    socket.end(postOf('[{},{}]'));
    await eventually(() => intake.answers.length === 1, 2000, 5);
    await roundTrip();
    t.notOk(seen.closed, 'the FIN is not read while the request waits');
    intake.answers[0]!('accepted');
    await eventually(() => seen.closed, 2000, 5);
    t.same(answersIn(seen.text), ['202 {"accepted":2}'], 'answered, then closed');
    t.same([counts.answersLostClientGone, counts.requestsWithdrawn], [0, 0]);
  });
}

t.test('answersLater: two requests in one write are cut off by uWS before the first is handed over: nothing stored, counted', async (t) => {
  const { intake, counts, port, roundTrip } = await route(t, { answersLater: true });
  intake.outcome = 'pending';
  const { socket, seen } = rawConnection(t, port);
  socket.write(postOf('{"n":1}') + postOf('{"n":2}'));
  await eventually(() => seen.closed, 2000, 5);
  await roundTrip();
  t.equal(seen.text, '', 'uWS closed the connection (it refuses a request while one is unanswered)');
  t.same(intake.entries, [], 'the first never reached the intake: a retry stores it once');
  t.equal(counts.requestsWithdrawn, 1, 'counted');
  t.equal(counts.answersLostClientGone, 0);
});

t.test('before the body, in order: too large, shutting down, origin, key, type, encoding', async (t) => {
  const { intake, state, port } = await route(t, { apiKeys: ['k'], corsOrigins: ['https://app.example'] });
  const ask = (headers: string, body = '{}') => exchange(t, port, `POST /v1/events HTTP/1.1\r\nhost: x\r\n${headers}content-length: ${body.length}\r\n\r\n${body}`);
  const cors = (text: string) => /^access-control-allow-origin: (.*)\r$/im.exec(text)?.[1];
  const ok = 'origin: https://app.example\r\nx-api-key: k\r\ncontent-type: application/json\r\n';
  state.shuttingDown = true;
  const tooLarge = await ask(ok, ' '.repeat(OPTIONS.maxBodyBytes + 1));
  t.same([tooLarge.status, JSON.parse(tooLarge.body).error, cors(tooLarge.text)], [413, 'body_too_large', 'https://app.example'], 'a declared length over MAX_BODY_BYTES first');
  const shutting = await ask('origin: https://evil.example\r\ncontent-type: text/xml\r\n');
  t.same([shutting.status, JSON.parse(shutting.body).error], [503, 'shutting_down'], 'then the shutdown, whatever else is wrong');
  state.shuttingDown = false;
  const origin = await ask('origin: https://evil.example\r\ncontent-type: text/xml\r\n');
  t.same([origin.status, JSON.parse(origin.body).error, cors(origin.text)], [403, 'origin_not_allowed', undefined], 'then the origin, echoing none');
  const key = await ask('origin: https://app.example\r\nx-api-key: nope\r\ncontent-type: text/xml\r\n');
  t.same([key.status, JSON.parse(key.body).error, cors(key.text)], [401, 'unauthorized', 'https://app.example'], 'then the key, with the allowed origin echoed');
  const type = await ask('x-api-key: k\r\ncontent-type: text/xml\r\ncontent-encoding: br\r\n');
  t.same([type.status, JSON.parse(type.body).error], [415, 'unsupported_media_type'], 'then the type');
  const encoding = await ask(`${ok}content-encoding: br\r\n`);
  t.same([encoding.status, JSON.parse(encoding.body).error], [415, 'unsupported_encoding'], 'then the encoding');
  t.match(encoding.text, /^connection: close\r$/im, 'an early answer to a request with a body closes the connection');
  const identity = await ask(`${ok}content-encoding: IDENTITY\r\nconnection: close\r\n`);
  t.equal(identity.status, 202, 'identity is no encoding, in any case');
  t.equal(intake.entries.length, 1, 'only that one reached the intake');
});

t.test('two Origin headers: 400 invalid_origin before anything else but the length, nothing stored', async (t) => {
  const { intake, counts, port } = await route(t, { corsOrigins: ['https://app.example'] });
  const ask = (headers: string) => exchange(t, port, `POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nconnection: close\r\n${headers}content-length: 2\r\n\r\n{}`);
  // Was 202: uWS reads the first Origin, while a proxy in front may have checked the second.
  const two = await ask('origin: https://app.example\r\norigin: https://evil.example\r\n');
  t.same([two.status, JSON.parse(two.body).error], [400, 'invalid_origin']);
  t.notMatch(two.text, /^access-control-allow-origin/im, 'no origin echoed');
  t.match(two.text, /^connection: close\r$/im, 'an early answer: the connection closed');
  const tooLarge = await exchange(t, port, `POST /v1/events HTTP/1.1\r\nhost: x\r\norigin: a\r\norigin: b\r\ncontent-length: ${OPTIONS.maxBodyBytes + 1}\r\n\r\n`);
  t.equal(JSON.parse(tooLarge.body).error, 'invalid_origin', 'before body_too_large');
  const one = await ask('origin: https://app.example\r\n');
  t.equal(one.status, 202, 'one Origin: stored');
  t.equal(intake.entries.length, 1, 'only that one reached the intake');
  t.equal(counts.requests['400'], 2, 'counted');
});

t.test('an answer to an allowed Origin lets the browser read it: credentials, and the headers a client reads', async (t) => {
  const { port } = await route(t, { corsOrigins: ['https://app.example'] });
  const answer = await exchange(t, port, 'POST /v1/events HTTP/1.1\r\nhost: x\r\norigin: https://app.example\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}');
  t.equal(answer.status, 202);
  // Was missing: navigator.sendBeacon is credentialed, and Chromium dropped its answer (issue 23).
  t.match(answer.text, /^access-control-allow-credentials: true\r$/im);
  t.match(answer.text, /^access-control-expose-headers: retry-after, idempotent-replayed\r$/im, 'Retry-After is not a safelisted header');
  t.match(answer.text, /^vary: origin\r$/im);
});

t.test('an early answer to a request without a body keeps the connection', async (t) => {
  const { port } = await route(t, { apiKeys: ['k'] });
  const request = 'POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n';
  // Two on one connection, the second asking to close: both answered, neither closed by the server.
  const answer = await rawRequest(port, request + request.replace('\r\n\r\n', '\r\nconnection: close\r\n\r\n'), 2000);
  t.equal(answer.text.match(/HTTP\/1\.1 401 Unauthorized/g)?.length, 2, 'both answered 401');
  t.notMatch(answer.text, /^connection: close/im, 'no connection: close from the server');
});
