// The client's suite (suite.ts) in Node: the built bundle, clients/js/dist/index.js, imported as
// a Node program would, with Node's fetch. The same scenarios run in Chromium in browser.test.ts.
import { gzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import t from 'tap';
import { createClient } from '../../../clients/js/dist/index.js';
import { startInProcess } from '../../helpers/in-process.js';
import { startS3 } from '../../helpers/s3.js';
import { eventually, ROOT } from '../../helpers/server.js';
import { scenarios } from './scenarios.js';
import { startScripted } from './scripted.js';
import { clientSuite, SUITE_ENV } from './suite.js';

t.test('the suite, in Node', async (t) => {
  const s3 = await startS3(t);
  const server = await startInProcess(t, { ...s3.env, ...SUITE_ENV });
  await clientSuite(t, (name, endpoint, tag) => scenarios[name](createClient, endpoint, tag), 'node', s3, server);
});

t.test('the bundle is one ES module with no imports, small enough for the README\'s figure', async (t) => {
  const js = readFileSync(`${ROOT}clients/js/dist/index.js`, 'utf8');
  t.notMatch(js, /^\s*import\b|\brequire\(/m, 'no runtime dependency');
  const gzipped = gzipSync(js, { level: 9 }).length;
  t.ok(gzipped < 5 * 1024, `${gzipped} bytes gzipped, under 5 KB`);
  const readme = readFileSync(`${ROOT}clients/js/README.md`, 'utf8');
  const stated = /about ([\d.]+) KB gzipped/.exec(readme)?.[1];
  t.ok(stated !== undefined && Math.abs(Number(stated) * 1024 - gzipped) < 256, `the README states it (${stated} KB)`);
});

t.test('the edges: after close, a hook that throws, Retry-After as a date, a trailing slash, the flush timer', async (t) => {
  const scripted = await startScripted(t);
  const errors: string[] = [];
  const delays: number[] = [];
  const client = createClient({
    endpoint: `${scripted.endpoint}/`,
    flushIntervalMs: 20,
    onError: (e) => {
      errors.push(e.code);
      throw new Error('a careless hook');
    },
    wait: (ms) => {
      delays.push(ms);
      return Promise.resolve();
    },
    random: () => 0,
  });
  scripted.script = [{ status: 503, error: 'queue_full', retryAfter: new Date(Date.now() + 60_000).toUTCString() }, { status: 400, error: 'invalid_json' }];
  client.track({ n: 1 });
  // Nothing calls flush: the timer sends it (20 ms), the 503's date is waited for, the 400 surfaced.
  await eventually(() => scripted.posts.length === 2);
  await client.flush();
  t.ok(delays[0]! > 50_000 && delays[0]! <= 60_000, `Retry-After as an HTTP date: ${delays[0]} ms`);
  t.same(errors, ['invalid_json'], 'surfaced, and the hook\'s exception did not stop the client');
  await client.close();
  client.track({ n: 2 });
  t.same(errors, ['invalid_json', 'closed'], 'tracked after close: refused');
  t.match(client.counts, { sent: 0, refused: 2, retries: 1 });
  t.same(scripted.posts.length, 2, 'nothing more sent');
  t.ok(scripted.posts.every((p) => p.body === '[{"n":1}]'), 'to <endpoint>/v1/events, the slash not doubled');
});
