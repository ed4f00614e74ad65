// The value of one top-level string field of an event, read from the event's bytes as the client
// sent them (validated JSON already: src/ingest/json-scan.ts), for OBJECT_KEY's `{event.FIELD}`.
// No object is built: the walk compares the top-level keys' bytes and steps over every value, so
// an event costs one pass over its bytes (a byte loop: a native search per string cost more in
// calls than it saved on strings this short).
//
// Rules (docs/querying.md): the key is matched as written (a key spelled with escapes does not
// match); when it occurs more than once the last occurrence counts, as JSON.parse, Python's json
// and the query engines read it; a value that is not a string counts as missing.
import { keySafe } from '../config/key-template.js';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;

/** A field name as the bytes to compare event keys with. */
export function fieldBytes(field: string): Buffer {
  return Buffer.from(field, 'utf8');
}

/** The key-safe partition value of the event body[from, to) (an object) for `field` (see keySafe). */
export function partitionOf(body: Buffer, from: number, to: number, field: Buffer): string {
  return keySafe(topLevelString(body, from, to, field));
}

/** The string value of `field` at the top level of the JSON object body[from, to), or undefined. */
export function topLevelString(body: Buffer, from: number, to: number, field: Buffer): string | undefined {
  let found: string | undefined;
  let p = skipBlanks(body, from + 1, to); // past the `{`
  while (p < to && body[p] === QUOTE) {
    const keyEnd = stringEnd(body, p, to);
    const match = keyEnd - p - 1 === field.length && body.compare(field, 0, field.length, p + 1, keyEnd) === 0;
    p = skipBlanks(body, keyEnd + 1, to);
    if (body[p] !== COLON) return found; // not an object's member: the validator saw to it that this never happens
    p = skipBlanks(body, p + 1, to);
    const valueEnd = skipValue(body, p, to);
    if (match) found = body[p] === QUOTE ? decodeString(body, p, valueEnd) : undefined;
    p = skipBlanks(body, valueEnd, to);
    if (body[p] !== COMMA) break;
    p = skipBlanks(body, p + 1, to);
  }
  return found;
}

function skipBlanks(body: Buffer, p: number, to: number): number {
  while (p < to && (body[p] === 0x20 || body[p] === 0x0a || body[p] === 0x0d || body[p] === 0x09)) p++;
  return p;
}

/** The index of the quote that closes the string opening at body[p]. */
function stringEnd(body: Buffer, p: number, to: number): number {
  for (let q = p + 1; q < to; q++) {
    const c = body[q];
    if (c === QUOTE) return q;
    if (c === BACKSLASH) q++; // the escaped character, whatever it is
  }
  return to;
}

/** Where the value starting at body[p] ends (exclusive). */
function skipValue(body: Buffer, p: number, to: number): number {
  const first = body[p];
  if (first === QUOTE) return stringEnd(body, p, to) + 1;
  if (first !== OPEN_BRACE && first !== OPEN_BRACKET) {
    while (p < to && body[p] !== COMMA && body[p] !== CLOSE_BRACE && body[p] !== CLOSE_BRACKET) p++;
    return p;
  }
  let depth = 0;
  for (; p < to; p++) {
    const c = body[p];
    if (c === QUOTE) p = stringEnd(body, p, to);
    else if (c === OPEN_BRACE || c === OPEN_BRACKET) depth++;
    else if ((c === CLOSE_BRACE || c === CLOSE_BRACKET) && --depth === 0) return p + 1;
  }
  return to;
}

/** The text of the JSON string body[p, end) (quotes included): its bytes, or JSON.parse of it alone when it has escapes. */
function decodeString(body: Buffer, p: number, end: number): string {
  for (let q = p + 1; q < end - 1; q++) if (body[q] === BACKSLASH) return JSON.parse(body.toString('utf8', p, end)) as string;
  return body.toString('utf8', p + 1, end - 1);
}
