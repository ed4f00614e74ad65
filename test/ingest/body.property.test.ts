// parseEvents (a byte scanner, src/ingest/json-scan.ts) against JSON.parse, on generated bodies:
// whitespace, escapes, nesting, number edge cases, for JSON arrays, single objects and NDJSON,
// valid, mutated character by character and byte by byte, plus edge cases in the manner of
// JSONTestSuite. A body is accepted iff it is UTF-8 and JSON.parse accepts it (each line, for
// NDJSON), every event is an object no deeper than MAX_EVENT_DEPTH, and there are 1 to
// MAX_EVENTS_PER_REQUEST of them; each accepted event's bytes parse to the same value as the
// element they came from, on one line; a body refused as invalid_json is one JSON.parse refuses.
//
// JSON_FUZZ_RUNS scales every property: npm test runs 300 each, test:ops 20,000, `npm run fuzz:json`
// 200,000 (or what it is given).
import { isUtf8 } from 'node:buffer';
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import t from 'tap';
import { type BodyFormat, parseEvents, Rejection } from '../../src/ingest/body.js';

const LIMITS = { maxEvents: 6, maxDepth: 4 };
const RUNS = Number(process.env.JSON_FUZZ_RUNS ?? 300);
const WHITESPACE = ['', '', ' ', '\t', '\n', '\r\n', '  \r\n\t'];
const INLINE_WHITESPACE = ['', '', ' ', '\t', '\r', ' \t '];
const NUMBERS = ['0', '-0', '1', '-1', '0.5', '1e3', '1E-7', '-2.5e+10', '1e400', '-1e-400', '12345678901234567890123', '0.000000000000000000001', '3.141592653589793238'];

type Tree =
  | { kind: 'number'; text: string }
  | { kind: 'string'; value: string; escapes: number[] }
  | { kind: 'literal'; text: 'true' | 'false' | 'null' }
  | { kind: 'array'; items: Tree[] }
  | { kind: 'object'; entries: [string, Tree][] };

const text = fc.string({ unit: fc.constantFrom('a', 'é', '한', '😀', '"', '\\', '/', '{', '}', '[', ']', ',', ':', '\n', '\u2028', '\u0000', ' '), maxLength: 8 });
const { tree, object } = fc.letrec<{ tree: Tree; leaf: Tree; array: Tree; object: Tree }>((tie) => ({
  tree: fc.oneof({ depthSize: 'small', withCrossShrink: true }, tie('leaf'), tie('array'), tie('object'), tie('object')),
  leaf: fc.oneof(
    fc.constantFrom(...NUMBERS).map((t): Tree => ({ kind: 'number', text: t })),
    fc.record({ value: text, escapes: fc.array(fc.nat(), { maxLength: 3 }) }).map((s): Tree => ({ kind: 'string', ...s })),
    fc.constantFrom('true', 'false', 'null').map((t): Tree => ({ kind: 'literal', text: t as 'true' })),
  ),
  array: fc.array(tie('tree'), { maxLength: 4 }).map((items): Tree => ({ kind: 'array', items })),
  object: fc.array(fc.tuple(text, tie('tree')), { maxLength: 4 }).map((entries): Tree => ({ kind: 'object', entries })),
}));

/** JSON text of a string, with the characters at `escapes` (mod length) written as \uXXXX. */
function quote(value: string, escapes: number[]): string {
  const chars = [...JSON.stringify(value).slice(1, -1).matchAll(/\\u[0-9a-f]{4}|\\.|[^]/gu)].map((m) => m[0]);
  for (const at of escapes) {
    const i = at % Math.max(chars.length, 1);
    const c = chars[i];
    if (c !== undefined && c.length === 1 && c.charCodeAt(0) < 0xd800) chars[i] = `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  }
  return `"${chars.join('')}"`;
}

/** Serialises with whitespace from `ws` (cycled) between every token. */
function write(node: Tree, ws: () => string): string {
  switch (node.kind) {
    case 'number':
    case 'literal':
      return node.text;
    case 'string':
      return quote(node.value, node.escapes);
    case 'array':
      return `[${ws()}${node.items.map((item) => write(item, ws)).join(`${ws()},${ws()}`)}${ws()}]`;
    case 'object':
      return `{${ws()}${node.entries.map(([k, v]) => `${quote(k, [])}${ws()}:${ws()}${write(v, ws)}`).join(`${ws()},${ws()}`)}${ws()}}`;
  }
}

const cycle = (choices: readonly string[], picks: number[]): (() => string) => {
  let i = 0;
  return () => choices[picks.length === 0 ? 0 : picks[i++ % picks.length]! % choices.length]!;
};

/**
 * Nesting of valid JSON text, counted on the text (as stored), not the parsed value: with a
 * duplicate key, JSON.parse keeps the last value, but the deeper one is still in the bytes.
 */
const textDepth = (json: string): number => {
  let depth = 0;
  let deepest = 0;
  for (const c of json.replace(/"(?:[^"\\]|\\.)*"/g, '')) {
    if (c === '{' || c === '[') deepest = Math.max(deepest, ++depth);
    else if (c === '}' || c === ']') depth--;
  }
  return deepest;
};
const isObject = (value: unknown): boolean => typeof value === 'object' && value !== null && !Array.isArray(value);

const INVALID = 'invalid_json';
const REFUSED = 'refused';

/** What the body holds by JSON.parse's account: the events, or why it is refused. */
function oracle(sent: Buffer, format: BodyFormat): unknown[] | typeof INVALID | typeof REFUSED {
  if (!isUtf8(sent)) return INVALID;
  const body = sent.toString('utf8');
  const values: unknown[] = [];
  let deepest = 0;
  if (format === 'json') {
    if (body.replace(/[ \t\r\n]/g, '') === '') return REFUSED;
    let value: unknown;
    try {
      value = JSON.parse(body);
    } catch {
      return INVALID;
    }
    values.push(...(Array.isArray(value) ? value : [value]));
    deepest = textDepth(body) - (Array.isArray(value) ? 1 : 0);
  } else {
    // Line by line, the first bad line decides: too many events, then invalid, then the limits.
    for (const line of body.split('\n')) {
      if (line.replace(/[ \t\r\n]/g, '') === '') continue;
      if (values.length === LIMITS.maxEvents) return REFUSED;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        return INVALID;
      }
      if (!isObject(value) || textDepth(line) > LIMITS.maxDepth) return REFUSED;
      values.push(value);
    }
  }
  return values.length >= 1 && values.length <= LIMITS.maxEvents && values.every(isObject) && deepest <= LIMITS.maxDepth ? values : REFUSED;
}

let accepted = 0;

function agrees(text: string | Buffer, format: BodyFormat): boolean {
  // What the server gets is UTF-8: a lone surrogate (a mutation can split a pair) becomes U+FFFD.
  const sent = Buffer.from(text);
  const expected = oracle(sent, format);
  const parsed = parseEvents(sent, format, LIMITS);
  if (parsed instanceof Rejection) {
    // The first line that is bad in both senses: the scanner and JSON.parse must agree on which.
    return expected === INVALID ? parsed.error === 'invalid_json' : expected === REFUSED && parsed.error !== 'invalid_json';
  }
  if (!Array.isArray(expected)) return false;
  accepted++;
  const { body: held, spans, bytes } = parsed;
  if (bytes !== held.length || spans.length !== expected.length * 2) return false;
  return expected.every((value, i) => {
    const event = held.toString('utf8', spans[2 * i], spans[2 * i + 1]);
    return !/[\r\n]/.test(event) && isDeepStrictEqual(JSON.parse(event), value);
  });
}

const whitespacePicks = fc.array(fc.nat(), { maxLength: 12 });
const mostlyObjects = fc.oneof({ arbitrary: object, weight: 4 }, { arbitrary: tree, weight: 1 });
const jsonBody = fc.tuple(fc.oneof(tree, fc.array(mostlyObjects, { maxLength: 7 }).map((items): Tree => ({ kind: 'array', items }))), whitespacePicks).map(([node, picks]) => {
  const ws = cycle(WHITESPACE, picks);
  return `${ws()}${write(node, ws)}${ws()}`;
});
const ndjsonBody = fc.tuple(fc.array(mostlyObjects, { minLength: 0, maxLength: 7 }), whitespacePicks, fc.array(fc.nat(), { maxLength: 4 })).map(([nodes, picks, blanks]) => {
  const ws = cycle(INLINE_WHITESPACE, picks);
  const lines = nodes.map((node) => `${ws()}${write(node, ws)}${ws()}`);
  for (const at of blanks) lines.splice(at % (lines.length + 1), 0, ws());
  return lines.join(picks.length % 2 === 0 ? '\n' : '\r\n');
});
/** A valid body with one character deleted, replaced or inserted. */
const mutated = (body: fc.Arbitrary<string>): fc.Arbitrary<string> =>
  fc.tuple(body, fc.nat(), fc.constantFrom('', '{', '}', '[', ']', '"', '\\', ',', ':', ' ', '\n', 'e', '-', '.', '1', 'x'), fc.boolean()).map(([s, at, c, replace]) => {
    const i = at % (s.length + 1);
    return s.slice(0, i) + c + s.slice(replace ? i + 1 : i);
  });

t.test('JSON bodies: accepted exactly when JSON.parse and the limits accept them, events intact', async (t) => {
  accepted = 0;
  fc.assert(fc.property(jsonBody, (body) => agrees(body, 'json')), { numRuns: RUNS });
  t.ok(accepted > RUNS / 10, `${accepted} of ${RUNS} accepted: both outcomes are exercised`);
});

t.test('NDJSON bodies: the same, line by line', async (t) => {
  accepted = 0;
  fc.assert(fc.property(ndjsonBody, (body) => agrees(body, 'ndjson')), { numRuns: RUNS });
  t.ok(accepted > RUNS / 10, `${accepted} of ${RUNS} accepted: both outcomes are exercised`);
});

t.test('mutated bodies: refused exactly when JSON.parse or the limits refuse them', async () => {
  fc.assert(fc.property(mutated(jsonBody), (body) => agrees(body, 'json')), { numRuns: RUNS });
  fc.assert(fc.property(mutated(ndjsonBody), (body) => agrees(body, 'ndjson')), { numRuns: RUNS });
});

/** A valid body with bytes replaced or inserted: any byte, so broken UTF-8, controls and NUL too. */
const byteMutated = (body: fc.Arbitrary<string>): fc.Arbitrary<Buffer> =>
  fc.tuple(body, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.boolean()), { minLength: 1, maxLength: 3 })).map(([s, edits]) => {
    let bytes = Buffer.from(s);
    for (const [at, byte, replace] of edits) {
      const i = at % (bytes.length + 1);
      bytes = Buffer.concat([bytes.subarray(0, i), Buffer.of(byte), bytes.subarray(replace ? i + 1 : i)]);
    }
    return bytes;
  });

t.test('byte-mutated bodies: the same', async () => {
  fc.assert(fc.property(byteMutated(jsonBody), (body) => agrees(body, 'json')), { numRuns: RUNS });
  fc.assert(fc.property(byteMutated(ndjsonBody), (body) => agrees(body, 'ndjson')), { numRuns: RUNS });
});

t.test('edge cases of the grammar, in the manner of JSONTestSuite, each judged by JSON.parse', async (t) => {
  const values = [
    // numbers
    '0', '-0', '01', '-01', '1.', '.1', '-', '+1', '1e', '1e+', '1E5', '0e0', '-0.0e-0', '1.5e', '2.e3', '0x10', '1_000',
    'NaN', 'Infinity', '-Infinity', '1e999', '00', '0.0.0', '- 1', '1 2',
    // literals
    'true', 'false', 'null', 'tru', 'nul', 'True', 'NULL', 'truex', 'nulll', 'undefined',
    // strings and escapes, raw characters in strings
    '""', '"\\u0000"', '"\\ud800"', '"\\udc00\\ud800"', '"\\uD83D\\uDE00"', '"\\u12"', '"\\u12G4"', '"\\U0041"', '"\\x41"',
    "\"\\'\"", '"\\/"', '"\\a"', '"\\', '"abc', "'single'", '"tab\there"', '"nl\nhere"', '"cr\rhere"', '"del\u007f"',
    '"nul\u0000"', '"\u2028\u2029"', '"é😀"', '"\u001f"',
    // containers
    '[]', '{}', '[1,]', '[,1]', '[1 2]', '{"a" 1}', '{"a":}', '{"a":1,}', '{,}', '{"a":1 "b":2}', '{a:1}', '{"a":1}}',
    '[[]', '[]]', '{"a":[}', '[{]}', '{"a":1,"a":2}', '{"":0}', '[[[[[]]]]]', '{"a":1:2}', '{"a"::1}', '{1:1}',
    // whitespace and comments
    '\f{}', '{\u000b}', '{\u00a0}', '\u2028{}', '\ufeff{}', '{} // c', '/* c */ {}', '{}\u0000', '\t{ }\r',
  ];
  const cases: string[] = [];
  for (const v of values) cases.push(v, `{"k":${v}}`, `[{"k":${v}}]`, `[{},${v}]`, `{"a":[${v}]}`, `{"k":${v}`);
  cases.push(
    '{"a":{"b":{"c":{}}}}', // depth 4: the limit
    '{"a":{"b":{"c":{"d":{}}}}}',
    '[{"a":[[[]]]}]',
    '[{"a":[[[[]]]]}]',
    '[{"a":1}]   x',
    '   ',
    '',
    '[{},{},{},{},{},{}]',
    '[{},{},{},{},{},{},{}]',
    '[{},{},{},{},{},{},{},]',
  );
  let refused = 0;
  for (const body of cases) {
    for (const format of ['json', 'ndjson'] as const) {
      // Named in ASCII: a U+2028 in an assertion's name would break the TAP stream.
      t.ok(agrees(body, format), `${format}: ${JSON.stringify(body).replace(/[^ -~]/gu, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`)}`);
      if (parseEvents(Buffer.from(body), format, LIMITS) instanceof Rejection) refused++;
    }
  }
  t.ok(refused > cases.length / 2 && refused < cases.length * 2, `${refused} of ${cases.length * 2} refused: both outcomes`);
});

t.test('an invalid body is refused saying where, by byte offset and character', async (t) => {
  const refusal = (body: string, format: BodyFormat = 'json') => parseEvents(Buffer.from(body), format, LIMITS) as Rejection;
  t.match(refusal('{"a":1,}'), { error: 'invalid_json', message: "invalid JSON: unexpected '}' at byte 7" });
  t.match(refusal('{"a":'), { error: 'invalid_json', message: 'invalid JSON: unexpected end of input at byte 5' });
  t.match(refusal('{"a":"\u0001"}'), { error: 'invalid_json', message: 'invalid JSON: unexpected control character 0x01 at byte 6' });
  t.match(refusal('{"a":😀}'), { error: 'invalid_json', message: "invalid JSON: unexpected '😀' at byte 5" });
  t.match(refusal('{}\n{"b":tru}\n', 'ndjson'), { error: 'invalid_json', message: "line 2: invalid JSON: unexpected '}' at byte 8", at: { line: 2 } });
});
