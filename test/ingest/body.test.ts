// The body parser: raw event texts out, exactly as sent, one line each; escapes cannot fool the splitter.
import t from 'tap';
import { type ParsedEvents, parseEvents, Rejection } from '../../src/ingest/body.js';

const parse = (text: string, format: 'json' | 'ndjson' = 'json', max = 1000) => parseEvents(Buffer.from(text), format, max);
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
    { unicode: '한국어 😀 \u2028' },
  ].map((e) => JSON.stringify(e));
  const parsed = parse(`[${events.join(' ,\n ')}]`);
  t.notOk(parsed instanceof Rejection);
  t.same(texts(parsed), events);
});

t.test('byte counts are UTF-8 bytes', async (t) => {
  const ascii = parse('[{"a":1},{"b":2}]') as { bytes: number };
  t.equal(ascii.bytes, 14);
  const multibyte = parse('{"k":"é😀"}') as { bytes: number };
  t.equal(multibyte.bytes, Buffer.byteLength('{"k":"é😀"}'));
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
