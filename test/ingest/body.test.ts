// The body parser: raw event texts out, exactly as sent, one line each; escapes cannot fool the splitter.
import t from 'tap';
import { type ParsedEvents, parseEvents, Rejection } from '../../src/ingest/body.js';

const parse = (text: string, format: 'json' | 'ndjson' = 'json', maxEvents = 1000, maxDepth = 64) => parseEvents(Buffer.from(text), format, { maxEvents, maxDepth });
/** The text of each event, from its byte span. */
const texts = (parsed: ParsedEvents | Rejection): string[] => {
  const { body, spans } = parsed as ParsedEvents;
  return Array.from({ length: spans.length / 2 }, (_, i) => body.toString('utf8', spans[2 * i], spans[2 * i + 1]));
};

t.test('array elements are cut at the right braces whatever their strings hold', async (t) => {
  const events = [
    { s: 'brace } and bracket ] inside' },
    { s: 'escaped quote \\" then brace }' },
    { s: 'ends in a backslash \\\\' },
    { s: '\\\\\\"' },
    { nested: [{ a: [1, { b: '}{' }] }], e: {} },
    { unicode: '한국어 😀' },
  ].map((e) => JSON.stringify(e));
  const parsed = parse(`[${events.join(' ,\n ')}]`);
  t.notOk(parsed instanceof Rejection);
  t.same(texts(parsed), events);
});

t.test('U+0085, U+2028 and U+2029 in strings are stored as their escapes: the same strings, lines no reader splits', async (t) => {
  const values = [{ a: 'x\u2028y', b: '\u2029', c: 'é\u0085😀' }, { k: 'plain' }, { ['key\u2028']: '\u2028\u2028' }];
  for (const format of ['json', 'ndjson'] as const) {
    const body = format === 'json' ? JSON.stringify(values) : values.map((v) => JSON.stringify(v)).join('\n');
    const parsed = parse(body, format) as ParsedEvents;
    t.same(texts(parsed).map((text) => JSON.parse(text)), values, `${format}: each event reads as sent`);
    t.same(texts(parsed), ['{"a":"x\\u2028y","b":"\\u2029","c":"é\\u0085😀"}', '{"k":"plain"}', '{"key\\u2028":"\\u2028\\u2028"}'], `${format}: escaped in place`);
    t.equal(parsed.bytes, parsed.body.length);
    const held = parsed.body.toString('utf8');
    t.notOk(/[\u0085\u2028\u2029]/.test(held), `${format}: none left raw (Python's splitlines finds one line per event)`);
  }
  const text = '[{"a":"no separators"}]';
  const none = Buffer.allocUnsafeSlow(text.length); // all its memory: kept as it is when owned
  none.write(text);
  t.equal((parseEvents(none, 'json', { maxEvents: 10, maxDepth: 64 }, true) as ParsedEvents).body, none, 'a body without them is kept as it is, not copied');
});

t.test('bytes are the bytes held, and a padded body holds its events only', async (t) => {
  const multibyte = parse('{"k":"é😀"}') as ParsedEvents;
  t.equal(multibyte.bytes, Buffer.byteLength('{"k":"é😀"}'), 'UTF-8 bytes');
  const array = JSON.stringify(Array.from({ length: 8 }, (_, i) => ({ i, type: 'page_view' })));
  const kept = parse(array) as ParsedEvents;
  t.equal(kept.bytes, array.length, 'a body that is mostly events is kept whole');
  t.equal(kept.body.length, kept.bytes);
  const padded = parse(`${' '.repeat(1 << 20)}{"a":1}${'\n'.repeat(1000)}`) as ParsedEvents;
  t.equal(padded.bytes, 7, 'a megabyte of padding around one event holds 7 bytes');
  t.equal(padded.body.length, 7);
  t.same(texts(padded), ['{"a":1}']);
  const spaced = parse(`[${'{"x":1}'.padEnd(5000)}, ${'{"y":2}'.padEnd(5000)}]`, 'json') as ParsedEvents;
  t.equal(spaced.bytes, 14);
  t.same(texts(spaced), ['{"x":1}', '{"y":2}']);
  const ndjson = parse(`{"a":1}${' '.repeat(9000)}\n\n${' '.repeat(9000)}{"b":2}\n`, 'ndjson') as ParsedEvents;
  t.equal(ndjson.bytes, 14);
  t.same(texts(ndjson), ['{"a":1}', '{"b":2}']);
});

t.test('the body is only read: a view of uWS memory is never written to', async (t) => {
  const original = '{\r\n"a":\n1\r}';
  const body = Buffer.from(original);
  t.same(texts(parseEvents(body, 'json', { maxEvents: 10, maxDepth: 64 })), ['{  "a": 1 }']);
  t.equal(body.toString(), original);
});

t.test('MAX_EVENT_DEPTH: deeper events are refused, saying where', async (t) => {
  const nest = (depth: number): string => '{"a":'.repeat(depth - 1) + '{}' + '}'.repeat(depth - 1);
  t.notOk(parse(nest(3), 'json', 10, 3) instanceof Rejection, 'depth 3 at a limit of 3');
  t.match(parse(nest(4), 'json', 10, 3), { status: 400, error: 'too_deep' });
  t.match(parse(`[{}, ${nest(4)}]`, 'json', 10, 3), { error: 'too_deep', at: { index: 1 } });
  t.match(parse(`[{}, {"a":[[{}]]}]`, 'json', 10, 3), { error: 'too_deep', at: { index: 1 } }, 'arrays count as levels');
  t.notOk(parse(`[${nest(3)}]`, 'json', 10, 3) instanceof Rejection, 'the outer array is not a level of its events');
  t.match(parse(`{}\n${nest(4)}\n`, 'ndjson', 10, 3), { error: 'too_deep', at: { line: 2 } });
  t.notOk(parse('{"s":"[[[[{{{{"}', 'json', 10, 1) instanceof Rejection, 'brackets in strings do not count');
  t.match(parse(nest(100_000)), { error: 'too_deep' }, '100,000 levels, at the default 64');
});

t.test('CR and LF inside an event become spaces, so each stored event is one line', async (t) => {
  const parsed = texts(parse('{\r\n"a":\n1\r}'));
  t.same(parsed, ['{  "a": 1 }']);
  t.same(JSON.parse(parsed[0]!), { a: 1 });
  t.same(texts(parse('{"a":\r1}\r\n{"b":2}', 'ndjson')), ['{"a": 1}', '{"b":2}']);
});

t.test('NDJSON stops counting at the limit', async (t) => {
  const many = '{}\n'.repeat(2000);
  const rejected = parse(many, 'ndjson', 10) as Rejection;
  t.equal(rejected.error, 'too_many_events');
  t.same(rejected.at, { line: 11 });
});

t.test('what is held is all its memory: no slice of a gunzip chunk or of the shared pool', async (t) => {
  const { gunzipSync, gzipSync } = await import('node:zlib');
  // gunzip hands small outputs back as slices of its 64 KiB chunk: held as is, 7 bytes would pin it.
  const gunzipped = gunzipSync(gzipSync('{"a":1}'));
  t.ok(gunzipped.buffer.byteLength > gunzipped.length, 'the fault is real: a slice of a larger chunk');
  const fromGzip = parseEvents(gunzipped, 'json', { maxEvents: 10, maxDepth: 64 }, true) as ParsedEvents;
  t.equal(fromGzip.body.buffer.byteLength, 7);
  const small = parse('[{"a":1},{"b":2}]') as ParsedEvents;
  t.equal(small.body.buffer.byteLength, small.bytes, 'a small copied body is not a slice of the pool');
  const padded = parse(`${' '.repeat(100)}{"a":1}`) as ParsedEvents;
  t.equal(padded.body.buffer.byteLength, 7, 'nor a compacted one');
});
