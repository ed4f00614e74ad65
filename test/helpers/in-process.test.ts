// The in-process server factory: it refuses what only a process of its own can honour, and one
// test process hosts several servers, each with its own port, metrics, logs and shutdown.
import t from 'tap';
import { startInProcess } from './in-process.js';
import { startS3 } from './s3.js';

t.test('EMF lines, a shared root, preloads and local mode need a process of their own', async (t) => {
  const s3 = await startS3(t);
  await t.rejects(startInProcess(t, { ...s3.env, METRICS_EMF: 'true' }), /METRICS_EMF=true needs a server process of its own/);
  await t.rejects(startInProcess(t, { ...s3.env, DURABLE_ROOT: '/tmp' }), /DURABLE_ROOT=\/tmp needs a server process of its own/);
  await t.rejects(startInProcess(t, { ...s3.env, NODE_OPTIONS: '--require=x' }), /NODE_OPTIONS=--require=x needs a server process of its own/);
  await t.rejects(startInProcess(t, {}), /needs an S3 server/);
});

t.test('two servers in one process: each its own port, counts and log lines; stopping one leaves the other serving', async (t) => {
  const s3 = await startS3(t);
  const a = await startInProcess(t, { ...s3.env, INSTANCE_ID: 'a' });
  const b = await startInProcess(t, { ...s3.env, INSTANCE_ID: 'b' });
  t.not(a.port, b.port);
  t.equal((await a.post('[{"n":1},{"n":2}]')).status, 202);
  t.equal((await b.post('{"n":3}')).status, 202);
  t.equal(await a.metric('ingest_events_accepted_total'), 2);
  t.equal(await b.metric('ingest_events_accepted_total'), 1);
  // As src/log.ts writes them: the level as a word, ISO time, the instance.
  t.match(a.logs.find((l) => l.msg === 'listening'), { level: 'info', instance: 'a', port: a.port, time: /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/ });
  t.notOk(b.logs.some((l) => l.instance !== 'b'), "b's log holds b's lines only");
  t.same(await a.stop(), { code: 0, signal: null });
  t.notOk(a.running());
  t.match(a.logs.at(-1), { msg: 'shutdown complete', acceptedEvents: 2, storedEvents: 2 });
  t.ok(b.running());
  t.equal((await b.post('{"n":4}')).status, 202, 'the other still serves');
});
