// The client in a real headless Chromium (Debian's, driven by playwright-core), on a page served
// from another loopback origin, against the real server: the suite the Node run has too
// (suite.ts), then what only a browser has: a tab closed with events queued (they go out as
// beacons), beacons typed as JSON (credentialed, preflighted), the default CORS_ORIGINS, and a
// server killed and restarted while the page's client retries. One browser for the file.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { stripTypeScriptTypes } from 'node:module';
import type { AddressInfo } from 'node:net';
import type { Page } from 'playwright-core';
import t, { type Test } from 'tap';
import type { Counts } from '../../../clients/js/dist/index.js';
import { launchChromium, noChromium, servePageOrigin } from '../../helpers/browser.js';
import { startInProcess } from '../../helpers/in-process.js';
import { startS3, type S3Server } from '../../helpers/s3.js';
import { eventually, killed, ROOT, startServer } from '../../helpers/server.js';
import { tempDir } from '../../helpers/temp.js';
import type { ScenarioName } from './scenarios.js';
import { startScripted } from './scripted.js';
import { clientSuite, SUITE_ENV } from './suite.js';

if (noChromium !== false) {
  t.plan(0, noChromium);
} else {
  const context = await launchChromium(t);
  const page = await servePageOrigin(t, {
    '/client.js': readFileSync(`${ROOT}clients/js/dist/index.js`, 'utf8'),
    '/scenarios.js': stripTypeScriptTypes(readFileSync(`${ROOT}test/clients/js/scenarios.ts`, 'utf8')),
  });
  /** A new tab on the page origin, its console errors reported on the test. */
  const open = async (t: Test): Promise<Page> => {
    const tab = await context.newPage();
    tab.on('pageerror', (err) => t.fail(`page error: ${err.message}`));
    await tab.goto(`${page.origin}/`);
    return tab;
  };
  /** The `i` of every stored event tagged `tag`, once at least `n` are stored. */
  const stored = async (s3: S3Server, tag: string, n: number): Promise<number[]> => {
    let found: number[] = [];
    await eventually(async () => {
      found = (await s3.objects()).flatMap((o) => o.records.filter((r) => r.event.tag === tag).map((r) => r.event.i as number));
      return found.length >= n;
    });
    return found.sort((a, b) => a - b);
  };
  const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
  // One server, with the page's origin in CORS_ORIGINS, for every test that stores events from the page.
  const s3 = await startS3(t);
  const server = await startInProcess(t, { ...s3.env, ...SUITE_ENV, CORS_ORIGINS: page.origin });
  const scripted = await startScripted(t);

  t.test('the suite, in a page from another origin', async (t) => {
    const tab = await open(t);
    const run = (name: ScenarioName, endpoint: string, tag: string) =>
      tab.evaluate(
        async ([name, endpoint, tag]) => {
          // Strings, so that TypeScript does not look for these modules: the page serves them.
          const [client, scenarios] = ['/client.js', '/scenarios.js'];
          const { createClient } = (await import(client!)) as typeof import('../../../clients/js/dist/index.js');
          const { scenarios: all } = (await import(scenarios!)) as typeof import('./scenarios.js');
          return all[name as ScenarioName](createClient, endpoint!, tag!);
        },
        [name, endpoint, tag],
      );
    await clientSuite(t, run, 'browser', s3, server);
  });

  t.test('a tab closed with events queued: every one arrives, in beacons under maxBeaconBytes', async (t) => {
    const before = await server.metric('http_requests_total', '{status="202"}');
    const tab = await open(t);
    const counts = await tab.evaluate(async (endpoint) => {
      const url = '/client.js';
      const { createClient } = (await import(url)) as typeof import('../../../clients/js/dist/index.js');
      // Nothing would be sent for a minute: only the page going away sends them.
      const client = createClient({ endpoint, flushIntervalMs: 60_000, maxBeaconBytes: 2000 });
      for (let i = 0; i < 40; i++) client.track({ tag: 'closed', i, pad: 'x'.repeat(50) });
      (globalThis as unknown as { client: typeof client }).client = client;
      return { ...client.counts };
    }, server.url);
    t.match(counts, { queued: 40, sent: 0 }, 'all queued when the tab closes');
    await tab.close({ runBeforeUnload: true });
    t.same(await stored(s3, 'closed', 40), range(40), 'every event stored once');
    // 40 events of ~85 bytes in beacons of at most 2000 bytes: two or more requests.
    t.ok((await server.metric('http_requests_total', '{status="202"}')) - before >= 2, 'in several beacons');
  });

  t.test('the batch in flight and the queue go out in beacons with their keys, and the API key, when the tab closes', async (t) => {
    scripted.posts.length = 0;
    scripted.script = ['stall'];
    const tab = await open(t);
    await tab.evaluate(async (endpoint) => {
      const url = '/client.js';
      const { createClient } = (await import(url)) as typeof import('../../../clients/js/dist/index.js');
      const client = createClient({ endpoint, apiKey: 'k 1', maxBatchEvents: 3, flushIntervalMs: 60_000 });
      // Three: a full batch, sent at once (and never answered); two more wait.
      for (let i = 0; i < 5; i++) client.track({ tag: 'inflight', i });
    }, scripted.endpoint);
    await eventually(() => scripted.posts.length === 1);
    await tab.close({ runBeforeUnload: true });
    await eventually(() => scripted.posts.length === 3);
    const [fetched, inFlight, queued] = scripted.posts;
    t.match(fetched, { in: 'header', apiKey: 'k 1', contentType: 'application/json' });
    t.match(inFlight, { in: 'query', key: fetched!.key, apiKey: 'k 1', body: fetched!.body, contentType: /^text\/plain/ }, 'the batch in flight, beaconed with its key: stored once whichever arrives');
    t.match(queued, { in: 'query', apiKey: 'k 1', contentType: /^text\/plain/ }, 'then the queue');
    t.not(queued!.key, fetched!.key, 'with a key of its own');
    t.same(JSON.parse(queued!.body), [{ tag: 'inflight', i: 3 }, { tag: 'inflight', i: 4 }]);
  });

  t.test('a page hidden (not closed) beacons its queue too', async (t) => {
    scripted.posts.length = 0;
    const tab = await open(t);
    const counts = await tab.evaluate(async (endpoint) => {
      const url = '/client.js';
      const { createClient } = (await import(url)) as typeof import('../../../clients/js/dist/index.js');
      const client = createClient({ endpoint, flushIntervalMs: 60_000 });
      client.track({ tag: 'hidden', i: 0 });
      // Headless pages stay visible: the state a tab switch gives, and its event.
      Object.defineProperty(document, 'visibilityState', { value: 'hidden', configurable: true });
      document.dispatchEvent(new Event('visibilitychange'));
      return { ...client.counts };
    }, scripted.endpoint);
    t.match(counts, { queued: 0, beaconed: 1 });
    await eventually(() => scripted.posts.length === 1);
    t.match(scripted.posts[0], { in: 'query', body: '[{"tag":"hidden","i":0}]' });
    await tab.close();
  });

  t.test('sendBeacon with a Blob typed application/json or NDJSON, from another origin, is stored', async (t) => {
    const tab = await open(t);
    const sent = await tab.evaluate((endpoint) => {
      const url = `${endpoint}/v1/events`;
      return [
        navigator.sendBeacon(url, new Blob([JSON.stringify([{ tag: 'blob', i: 0 }, { tag: 'blob', i: 1 }])], { type: 'application/json' })),
        navigator.sendBeacon(url, new Blob([`${JSON.stringify({ tag: 'blob', i: 2 })}\n`], { type: 'application/x-ndjson' })),
      ];
    }, server.url);
    t.same(sent, [true, true]);
    // Were dropped by Chromium (sendBeacon returned true all the same): a beacon is credentialed,
    // and the preflight's answer had no Access-Control-Allow-Credentials (issue 23).
    t.same(await stored(s3, 'blob', 3), [0, 1, 2]);
    await tab.close();
  });

  t.test('without CORS_ORIGINS a page of any origin reads the answer (the default `*`)', async (t) => {
    const s3 = await startS3(t);
    const server = await startInProcess(t, { ...s3.env, BATCH_MAX_AGE_MS: '50' });
    const tab = await open(t);
    const answer = await tab.evaluate(async (endpoint) => {
      const res = await fetch(`${endpoint}/v1/events`, { method: 'POST', body: '{"tag":"default","i":0}', headers: { 'content-type': 'application/json' } });
      const beaconed = navigator.sendBeacon(`${endpoint}/v1/events`, new Blob(['{"tag":"default","i":1}'], { type: 'application/json' }));
      return [res.status, await res.text(), beaconed];
    }, server.url);
    // Was "Failed to fetch", with the event stored: a retrying client stored it twice.
    t.same(answer, [202, '{"accepted":1}', true]);
    t.same(await stored(s3, 'default', 2), [0, 1], 'and a JSON beacon is stored too');
    await tab.close();
  });

  t.test(
    'a server killed and restarted while the page\'s client retries: every event stored exactly once',
    async (t) => {
      const s3 = await startS3(t);
      const env = { ...s3.env, ACK_LEVEL: 'disk', WAL_DIR: tempDir(t, 'wal'), DLQ_DIR: tempDir(t, 'dlq'), CORS_ORIGINS: page.origin, BATCH_MAX_AGE_MS: '50' };
      let server = await startServer(t, env);
      const front = await loseAnswerProxy(t, server.port);
      const tab = await open(t);
      const sending = tab.evaluate(async (endpoint) => {
        const url = '/client.js';
        const { createClient } = (await import(url)) as typeof import('../../../clients/js/dist/index.js');
        // Retries for about 25 s (200 attempts, waits of up to 250 ms): a restart on a loaded machine fits.
        const client = createClient({ endpoint, maxBatchEvents: 10, flushIntervalMs: 60_000, retryBaseMs: 20, retryMaxMs: 250, maxAttempts: 200 });
        for (let i = 0; i < 30; i++) client.track({ tag: 'restart', i });
        await client.flush();
        return { ...client.counts };
      }, front.url);
      // The first batch is stored (in the fsynced WAL) and its 202 lost on the way back; the
      // server is then killed, and the client retries against nothing until it is back.
      await front.lost;
      await killed(t, server);
      server = await startServer(t, env);
      front.target = server.port;
      const counts: Counts = await sending;
      t.match(counts, { sent: 30, failed: 0, refused: 0 });
      // By the client, or by Chromium itself (it resends a request whose kept-alive connection closed with no answer).
      t.ok(front.keys.filter((key) => key === front.keys[0]).length >= 2, 'the batch whose answer was lost was sent again, with its key');
      // Everything the server took is in S3 once it has shut down.
      t.same(await server.stop(), { code: 0, signal: null });
      t.same(await stored(s3, 'restart', 30), range(30), 'each event once: the retry of the first batch was recognised by its key');
      await tab.close();
    },
  );
}

/**
 * A front for the server: forwards each request to `target`, except that the answer to the first
 * POST is dropped (the connection cut) after the server sent it, as a proxy reset or a timeout
 * would; while the server is down, connections are cut. `lost` resolves once that answer is lost;
 * `keys` are the Idempotency-Keys of the POSTs, in order.
 */
async function loseAnswerProxy(t: Test, port: number): Promise<{ url: string; target: number; lost: Promise<void>; keys: string[] }> {
  let lose: () => void = () => {};
  const front = { url: '', target: port, lost: new Promise<void>((resolve) => (lose = resolve)), keys: [] as string[] };
  let first = true;
  const proxy = http.createServer((req, res) => {
    if (req.method === 'POST') front.keys.push(String(req.headers['idempotency-key']));
    const upstream = http.request({ host: '127.0.0.1', port: front.target, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      if (req.method === 'POST' && first) {
        first = false;
        answer.resume();
        answer.on('end', () => {
          req.socket.destroy();
          lose();
        });
        return;
      }
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => req.socket.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    proxy.closeAllConnections();
    return new Promise((resolve) => proxy.close(resolve));
  });
  front.url = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  return front;
}
