// The benchmark's event generator: the same bodies for the same seed, every one different, about
// 300 bytes each, with the fields varying as bench/README.md says.
import t from 'tap';
import { gunzipSync } from 'node:zlib';
import { bodies, buildBodies, DISTINCT_BODIES } from '../../bench/lib/bodies.js';
import { event, eventFields, SEED } from '../../bench/lib/event.js';

t.test('the same seed gives the same events, another seed others', async (t) => {
  for (const i of [0, 1, 9_999, 123_456]) {
    t.equal(event(i, 7), event(i, 7), `event ${i}, seed 7, twice`);
    t.not(event(i, 7), event(i, 8), `event ${i}: seeds 7 and 8 differ`);
  }
  t.equal(event(42), event(42, SEED), 'the default seed is SEED');
  // Fixed text, the same on every machine: a change to the generator changes every run's bodies,
  // which makes runs before and after it incomparable, and must be seen to.
  t.equal(
    event(0),
    '{"type":"click","event_id":"46ae736c-26d5-4500-a6c0-000000000000","user_id":"u_162166","ts":1796083200009,"url":"https://shop.example.com/help/2343","referrer":"https://t.co/x8Kd02Lq","user_agent":"ShopApp/5.1.9 (Android 13; Pixel 7)","props":{"element":"div","text":"Details"}}',
  );
  t.match(JSON.parse(event(3)) as object, { event_id: /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-a[0-9a-f]{3}-000000000003$/ });
});

t.test('the single-event shape: at least 10,000 distinct bodies, each 200 to 500 bytes, about 320 on average', async (t) => {
  const { request, events, jsonBytesPerRequest } = bodies('single');
  t.ok(DISTINCT_BODIES >= 10_000);
  t.equal(request.bodies.length, DISTINCT_BODIES);
  t.equal(events, 1);
  t.equal(new Set(request.bodies.map((b) => b.toString())).size, request.bodies.length, 'no body repeats');
  const sizes = request.bodies.map((b) => b.length);
  t.ok(Math.min(...sizes) >= 200 && Math.max(...sizes) <= 500, `sizes ${Math.min(...sizes)} to ${Math.max(...sizes)}`);
  t.ok(jsonBytesPerRequest > 280 && jsonBytesPerRequest < 360, `mean ${jsonBytesPerRequest.toFixed(0)} bytes`);
  t.equal(bodies('single'), bodies('single'), 'built once');
});

t.test('fields vary as real traffic does', async (t) => {
  const sample = Array.from({ length: 2000 }, (_, i) => eventFields(i));
  const distinct = (key: string) => new Set(sample.map((e) => JSON.stringify(e[key]))).size;
  t.ok(distinct('type') >= 7, 'every event type');
  t.ok(distinct('user_agent') >= 10, 'user agents');
  t.ok(distinct('referrer') >= 8, 'referrers (and none, for direct traffic)');
  t.ok(distinct('url') >= 1500, 'paths');
  t.equal(distinct('ts'), sample.length, 'timestamps');
  t.equal(distinct('event_id'), sample.length, 'ids');
  const signedIn = sample.filter((e) => 'user_id' in e).length;
  t.ok(signedIn > 1000 && signedIn < 1400, `about 60% signed in (${signedIn})`);
  t.ok(sample.every((e) => 'user_id' in e !== 'anonymous_id' in e), 'a user id or an anonymous id, never both');
  // Each type's properties: what a column-oriented query would read.
  const props = new Map(sample.map((e) => [e.type as string, Object.keys(e.props as object).join(',')]));
  t.same(Object.fromEntries([...props].sort()), {
    add_to_cart: 'sku,price,currency,qty',
    checkout: 'sku,price,currency,qty',
    click: 'element,text',
    page_view: 'title,load_ms',
    search: 'query,results',
    signup: 'title,load_ms',
    video_play: 'video_id,position_s',
  });
});

t.test('the 50-event shapes: the same distinct events as a JSON array, NDJSON and a gzip JSON array', async (t) => {
  const [array, ndjson, gzip] = (['array', 'ndjson', 'gzip'] as const).map((shape) => buildBodies(shape, 3));
  const events = (text: string) => (JSON.parse(text) as unknown[]).map((e) => JSON.stringify(e));
  const first = events(array!.request.bodies[0]!.toString());
  t.equal(first.length, 50);
  t.same(first, Array.from({ length: 50 }, (_, i) => event(i)), 'events 0 to 49, in order');
  t.same(events(array!.request.bodies[2]!.toString()), Array.from({ length: 50 }, (_, i) => event(100 + i)), 'the third body: events 100 to 149');
  t.equal(ndjson!.request.bodies[1]!.toString(), `${Array.from({ length: 50 }, (_, i) => event(50 + i)).join('\n')}\n`);
  t.equal(gunzipSync(gzip!.request.bodies[1]!).toString(), array!.request.bodies[1]!.toString());
  t.same([array!.request.headers, ndjson!.request.headers, gzip!.request.headers], [
    { 'content-type': 'application/json' },
    { 'content-type': 'application/x-ndjson' },
    { 'content-type': 'application/json', 'content-encoding': 'gzip' },
  ]);
  for (const shaped of [array!, ndjson!, gzip!]) t.equal(shaped.events, 50);
  const jsonBytes = array!.request.bodies.reduce((n, b) => n + b.length, 0) / 3;
  t.equal(gzip!.jsonBytesPerRequest, jsonBytes, 'bytes posted: the JSON before gzip');
  t.ok(gzip!.request.bodies[0]!.length < jsonBytes / 3, 'the gzip bodies are compressed');
});
