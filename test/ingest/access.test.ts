// Who may post: API keys in x-api-key, Authorization: Bearer or ?api_key= (read from real requests
// on a uWebSockets.js app), browser origins against CORS_ORIGINS, and the CORS preflight's answer.
import t from 'tap';
import { Access } from '../../src/ingest/access.js';
import { Responder } from '../../src/ingest/respond.js';
import { uWS } from '../../src/ingest/uws.js';
import { HttpCounts } from '../../src/metrics/http.js';
import { listenApp } from '../helpers/uws-app.js';

t.test('origins: any without CORS_ORIGINS; with it, listed ones, "*", and requests without an Origin', async (t) => {
  const open = new Access([], []);
  t.ok(open.originAllowed('https://anywhere.example'));
  // Was '': the server stored a browser's events and the browser saw "Failed to fetch", so a
  // retrying client stored them again (issue 23).
  t.equal(open.corsOrigin('https://anywhere.example'), 'https://anywhere.example', 'and echoed, so that browsers can read the answer');

  const listed = new Access([], ['https://app.example', 'https://admin.example']);
  t.ok(listed.originAllowed('https://app.example'));
  t.ok(listed.originAllowed('https://admin.example'));
  t.notOk(listed.originAllowed('https://evil.example'));
  t.notOk(listed.originAllowed('https://app.example.evil.example'), 'a prefix is not a match');
  t.notOk(listed.originAllowed('http://app.example'), 'nor another scheme');
  t.ok(listed.originAllowed(''), 'no Origin (an SDK on a server): allowed');
  t.equal(listed.corsOrigin('https://app.example'), 'https://app.example', 'an allowed origin is echoed');
  t.equal(listed.corsOrigin('https://evil.example'), '', 'another is not');
  t.equal(listed.corsOrigin(''), '', 'nor an absent one');

  const wild = new Access([], ['https://*.example.com', 'http://*.dev.example:8080']);
  for (const origin of ['https://a.example.com', 'https://a.b.example.com', 'https://x-1.example.com', 'http://app.dev.example:8080']) t.ok(wild.originAllowed(origin), `${origin}: a subdomain`);
  for (const origin of [
    'https://example.com', // the domain itself is not a subdomain
    'https://.example.com',
    'http://a.example.com', // another scheme
    'https://a.example.com:8443', // another port
    'https://aexample.com',
    'https://a.example.com.evil.example',
    'https://evil.example/.example.com',
    'https://evil.example#.example.com',
    'http://app.dev.example',
  ]) t.notOk(wild.originAllowed(origin), `${origin}: not matched`);

  const any = new Access([], ['*']);
  t.ok(any.originAllowed('https://whoever.example'));
  t.equal(any.corsOrigin('https://whoever.example'), 'https://whoever.example', '"*": the origin itself is echoed, not "*"');
});

t.test('API keys: from x-api-key, a Bearer token in any case, or ?api_key=; none needed without API_KEYS', async (t) => {
  const withKeys = new Access(['k1', 'k2'], []);
  const without = new Access([], []);
  const app = uWS.App().get('/*', (res, req) => {
    res.end(JSON.stringify([withKeys.authorized(req), without.authorized(req)]));
  });
  const port = await listenApp(t, app);
  const ask = async (path: string, headers: Record<string, string> = {}): Promise<[boolean, boolean]> =>
    (await (await fetch(`http://127.0.0.1:${port}${path}`, { headers })).json()) as [boolean, boolean];

  t.same(await ask('/'), [false, true], 'no key: refused, unless no keys are set');
  t.same(await ask('/', { 'x-api-key': 'k1' }), [true, true]);
  t.same(await ask('/', { 'x-api-key': 'k3' }), [false, true], 'a key not listed');
  t.same(await ask('/', { 'x-api-key': 'K1' }), [false, true], 'keys are case-sensitive');
  t.same(await ask('/', { authorization: 'Bearer k2' }), [true, true]);
  t.same(await ask('/', { authorization: 'bEARER k2' }), [true, true], 'the scheme in any case');
  t.same(await ask('/', { authorization: 'Bearer   k2  ' }), [true, true], 'spaces around the token');
  t.same(await ask('/', { authorization: 'Basic k2' }), [false, true], 'another scheme');
  t.same(await ask('/', { authorization: 'k2' }), [false, true], 'a bare token');
  t.same(await ask('/', { authorization: 'Bearer ' }), [false, true], 'an empty token');
  t.same(await ask('/?api_key=k2'), [true, true], 'the query key (navigator.sendBeacon)');
  t.same(await ask('/?api_key=k3'), [false, true]);
  t.same(await ask('/', { 'x-api-key': 'wrong', authorization: 'Bearer k1' }), [true, true], 'any one valid key is enough');
});

t.test('the preflight: 204, with the CORS headers for an allowed origin only, and counted', async (t) => {
  const counts = new HttpCounts();
  const respond = new Responder(counts);
  const access = new Access([], ['https://app.example']);
  const port = await listenApp(t, uWS.App().options('/*', (res, req) => access.preflight(res, req, respond)));
  const preflight = (origin: string) => fetch(`http://127.0.0.1:${port}/v1/events`, { method: 'OPTIONS', headers: { origin } });

  const allowed = await preflight('https://app.example');
  t.equal(allowed.status, 204);
  t.equal(allowed.headers.get('access-control-allow-origin'), 'https://app.example');
  t.equal(allowed.headers.get('vary'), 'origin');
  t.equal(allowed.headers.get('access-control-allow-methods'), 'POST, OPTIONS');
  t.same(
    allowed.headers
      .get('access-control-allow-headers')!
      .split(',')
      .map((h) => h.trim())
      .sort(),
    ['authorization', 'content-encoding', 'content-type', 'idempotency-key', 'x-api-key'],
    'every header an SDK sends may be sent',
  );
  t.equal(allowed.headers.get('access-control-allow-credentials'), 'true', 'credentialed requests (every sendBeacon) too');
  t.equal(allowed.headers.get('access-control-expose-headers'), 'retry-after, idempotent-replayed');
  t.equal(allowed.headers.get('access-control-max-age'), '86400');

  const other = await preflight('https://evil.example');
  t.equal(other.status, 204, 'another origin still gets a 204...');
  t.equal(other.headers.get('access-control-allow-origin'), null, '...without any CORS header');
  t.equal(other.headers.get('access-control-allow-methods'), null);
  t.equal(counts.requests['204'], 2, 'each preflight counted as a 204');
});
