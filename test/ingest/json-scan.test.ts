// The scanner's own contract, below parseEvents: where the first invalid byte is, which events it
// notes, and that it reads only body[from, to). body.property.test.ts checks what it accepts
// against JSON.parse.
import t from 'tap';
import { JsonScan, NOTHING, OBJECT, SCALAR, scanJson } from '../../src/ingest/json-scan.js';

function scan(text: string, maxDepth = 64, maxSpans = 100, around = ''): { scan: JsonScan; spans: number[] } {
  const body = Buffer.from(`${around}${text}${around}`);
  const out = new JsonScan();
  const spans: number[] = [];
  scanJson(body, around.length, around.length + Buffer.byteLength(text), maxDepth, spans, maxSpans, out);
  return { scan: out, spans: spans.map((at) => at - around.length) };
}

t.test('errorAt: the first byte that makes the text invalid, or where it ends too soon', async (t) => {
  const cases: [string, number][] = [
    ['{"a":1}', -1],
    ['{"a":1,}', 7],
    ['{"a" 1}', 5],
    ['{1:2}', 1],
    ['[1,]', 3],
    ['[1 2]', 3],
    ['{"a":tru}', 8],
    ['{"a":"\\x"}', 7],
    ['{"a":"\\u12g4"}', 10],
    ['{"a":"b', 7],
    ['[[[', 3],
    ['-', 1],
    ['-01', 2],
    ['1.e3', 2],
    ['1e+', 3],
    ['{} {}', 3],
    [']', 0],
    ['{"a":"\u0001"}', 6],
  ];
  for (const [text, at] of cases) t.equal(scan(text).scan.errorAt, at, JSON.stringify(text));
});

t.test('events: the top-level array\'s elements, or the top-level value', async (t) => {
  const array = scan(' [ {"a":1} , 2 ,{"b":[[]]}, {} ] ', 1, 3);
  t.match(array.scan, { errorAt: -1, count: 4, firstNotObject: 1, firstTooDeep: 2 });
  t.same(array.spans, [3, 10, 13, 14, 16, 26], 'the first maxSpans, as [start, end) pairs');
  t.match(scan(' {"a":{"b":{}}} ', 2).scan, { top: OBJECT, count: 1, firstTooDeep: 0 });
  t.same(scan(' {"a":{"b":{}}} ').spans, [1, 15]);
  t.match(scan('"x"').scan, { top: SCALAR, errorAt: -1 });
  t.match(scan(' \t\r\n').scan, { top: NOTHING, errorAt: -1, count: 0 });
});

t.test('only body[from, to) is read: bytes around it are not the text', async (t) => {
  t.match(scan('{"a":1}', 64, 100, '}}').scan, { errorAt: -1, count: 1 });
  t.equal(scan('{"a":1', 64, 100, '}}').scan.errorAt, 2 + 6, 'a text cut short at `to` fails there (an offset in body), whatever follows');
  t.equal(scan('', 64, 100, '[]').scan.top, NOTHING);
});

t.test('nesting deeper than the shared stack, valid or cut short', async (t) => {
  for (const depth of [4095, 4096, 4097, 10_000]) {
    t.match(scan('['.repeat(depth) + ']'.repeat(depth)).scan, { errorAt: -1, count: 1, firstTooDeep: 0 }, `${depth} levels`);
    t.equal(scan('['.repeat(depth)).scan.errorAt, depth, `${depth} levels, never closed`);
  }
  t.match(scan('[{}]').scan, { errorAt: -1, firstTooDeep: -1 }, 'the shared stack is as it was after a deep scan');
});
