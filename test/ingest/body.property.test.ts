// parseEvents against JSON.parse, on generated bodies: whitespace, escapes, nesting, number edge
// cases, for JSON arrays, single objects and NDJSON, valid and mutated. A body is accepted iff
// JSON.parse accepts it (each line, for NDJSON), every event is an object no deeper than
// MAX_EVENT_DEPTH, and there are 1 to MAX_EVENTS_PER_REQUEST of them; each accepted event's bytes
// parse to the same value as the element they came from, on one line.
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import t from 'tap';
import { type BodyFormat, type ParsedEvents, parseEvents, Rejection } from '../../src/ingest/body.js';

const LIMITS = { maxEvents: 6, maxDepth: 4 };
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

/** What the body holds by JSON.parse's account: the events, or undefined for a refusal. */
function oracle(body: string, format: BodyFormat): unknown[] | undefined {
  const values: unknown[] = [];
  let deepest = 0;
  try {
    if (format === 'json') {
      const value: unknown = JSON.parse(body);
      values.push(...(Array.isArray(value) ? value : [value]));
      deepest = textDepth(body) - (Array.isArray(value) ? 1 : 0);
    } else {
      for (const line of body.split('\n')) {
        if (line.replace(/[ \t\r\n]/g, '') === '') continue;
        values.push(JSON.parse(line));
        deepest = Math.max(deepest, textDepth(line));
      }
    }
  } catch {
    return undefined;
  }
  return values.length >= 1 && values.length <= LIMITS.maxEvents && values.every(isObject) && deepest <= LIMITS.maxDepth ? values : undefined;
}

let accepted = 0;

function agrees(text: string, format: BodyFormat): boolean {
  // What the server gets is UTF-8: a lone surrogate (a mutation can split a pair) becomes U+FFFD.
  const sent = Buffer.from(text);
  const expected = oracle(sent.toString('utf8'), format);
  const parsed = parseEvents(sent, format, LIMITS);
  if (expected === undefined || parsed instanceof Rejection) return expected === undefined && parsed instanceof Rejection;
  accepted++;
  const { body: held, spans, bytes } = parsed as ParsedEvents;
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
  fc.assert(fc.property(jsonBody, (body) => agrees(body, 'json')), { numRuns: 2000 });
  t.ok(accepted > 200, `${accepted} of 2000 accepted: both outcomes are exercised`);
});

t.test('NDJSON bodies: the same, line by line', async (t) => {
  accepted = 0;
  fc.assert(fc.property(ndjsonBody, (body) => agrees(body, 'ndjson')), { numRuns: 2000 });
  t.ok(accepted > 200, `${accepted} of 2000 accepted: both outcomes are exercised`);
});

t.test('mutated bodies: refused exactly when JSON.parse or the limits refuse them', async () => {
  fc.assert(fc.property(mutated(jsonBody), (body) => agrees(body, 'json')), { numRuns: 2000 });
  fc.assert(fc.property(mutated(ndjsonBody), (body) => agrees(body, 'ndjson')), { numRuns: 2000 });
});
