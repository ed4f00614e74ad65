// A strict JSON (RFC 8259) validator over bytes that builds nothing: it checks the grammar and
// notes where each event is, so a body is validated without the object graph JSON.parse would
// build and throw away (its cost, in time and in memory, was most of the hot path and the one
// unbounded working set: a 1 MiB body of `[],[],…` took hundreds of MB).
//
// Bytes are enough: every JSON structural character is ASCII, and no byte of a multi-byte UTF-8
// sequence is. UTF-8 validity itself is checked by the caller (buffer.isUtf8), once per body.
// The container stack is one byte per level in a scratch array shared by every scan (one at a
// time: scans are synchronous); a body nested deeper than that gets a bigger copy for its scan
// only, at most one byte per byte of the body.
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const SPACE = 0x20;
const TAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;
const COMMA = 0x2c;
const COLON = 0x3a;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const END = -1;

/** Bytes that end a run of plain string bytes: the quote, the backslash, and control characters. */
const SPECIAL_IN_STRING = new Uint8Array(256);
for (let c = 0; c < SPACE; c++) SPECIAL_IN_STRING[c] = 1;
SPECIAL_IN_STRING[QUOTE] = 1;
SPECIAL_IN_STRING[BACKSLASH] = 1;

/** After a backslash: 1 for the single-character escapes, 2 for `u`. */
const ESCAPE = new Uint8Array(256);
for (const c of '"\\/bfnrt') ESCAPE[c.charCodeAt(0)] = 1;
ESCAPE['u'.charCodeAt(0)] = 2;
const HEX = new Uint8Array(256);
for (const c of '0123456789abcdefABCDEF') HEX[c.charCodeAt(0)] = 1;

const STACK = new Uint8Array(4096);

export const NOTHING = 0;
export const OBJECT = 1;
const ARRAY = 2;
export const SCALAR = 3;

/** The result of a scan; the caller owns it and may reuse it. */
export class JsonScan {
  /** Offset of the first byte that makes the text invalid (`to` when it ends too soon), or -1. */
  errorAt = -1;
  /** The top-level value: NOTHING (only whitespace), OBJECT, ARRAY or SCALAR. */
  top = NOTHING;
  /** Elements of a top-level array. */
  count = 0;
  /** Index of the first element of a top-level array that is not an object, or -1. */
  firstNotObject = -1;
  /** Index of the first event deeper than the limit (0 for a top-level object), or -1. */
  firstTooDeep = -1;
}

const isSpace = (c: number | undefined): boolean => c === SPACE || c === LF || c === CR || c === TAB;

export function trimStart(body: Buffer, from: number, to: number): number {
  while (from < to && isSpace(body[from])) from++;
  return from;
}

export function trimEnd(body: Buffer, from: number, to: number): number {
  while (to > from && isSpace(body[to - 1])) to--;
  return to;
}

/** CR and LF -> space; only for valid JSON texts and what separates them, where they are whitespace. */
export function blankLineBreaks(body: Buffer): void {
  for (let at = body.indexOf(LF); at !== -1; at = body.indexOf(LF, at + 1)) body[at] = SPACE;
  for (let at = body.indexOf(CR); at !== -1; at = body.indexOf(CR, at + 1)) body[at] = SPACE;
}

/**
 * Validates the JSON text body[from, to) (one value, whitespace around it allowed) into `out`.
 * The events are the top-level value when it is not an array, else the array's elements: their
 * nesting is counted from each event's own opening bracket (`{}` is 1) against `maxDepth`, and
 * the first `maxSpans` of them are appended to `spans` as [start, end) pairs. The whole text is
 * always checked, so a grammar error anywhere wins over every other finding.
 */
export function scanJson(body: Buffer, from: number, to: number, maxDepth: number, spans: number[], maxSpans: number, out: JsonScan): void {
  out.errorAt = -1;
  out.count = 0;
  out.firstNotObject = -1;
  out.firstTooDeep = -1;
  let i = trimStart(body, from, to);
  if (i === to) {
    out.top = NOTHING;
    return;
  }
  const first = body[i];
  out.top = first === OPEN_BRACE ? OBJECT : first === OPEN_BRACKET ? ARRAY : SCALAR;
  // Depth at which events start: inside the top-level array, or the top-level value itself.
  const level = out.top === ARRAY ? 1 : 0;
  let depth = 0;
  let deepest = 0;
  let start = i;
  let stack: Uint8Array = STACK;
  for (;;) {
      // A value is expected at i.
      if (depth === level) {
        start = i;
        deepest = depth;
      }
      let c = i < to ? body[i]! : END;
      if (c === OPEN_BRACE || c === OPEN_BRACKET) {
        if (depth === stack.length) stack = grow(stack);
        stack[depth++] = c;
        if (depth > deepest) deepest = depth;
        i = trimStart(body, i + 1, to);
        c = i < to ? body[i]! : END;
        if (c === closing(stack[depth - 1]!)) {
          depth--;
          i++;
        } else if (stack[depth - 1] === OPEN_BRACE) {
          i = key(body, i, to);
          if (i < 0) return fail(out, ~i);
          continue;
        } else {
          continue;
        }
      } else if (c === QUOTE) {
        i = string(body, i + 1, to);
        if (i < 0) return fail(out, ~i);
      } else if (c === MINUS || (c >= ZERO && c <= NINE)) {
        i = number(body, i, to);
        if (i < 0) return fail(out, ~i);
      } else {
        i = literal(body, i, to, c === 0x74 ? TRUE : c === 0x66 ? FALSE : c === 0x6e ? NULL : undefined);
        if (i < 0) return fail(out, ~i);
      }
      // A value ended at i: note an event that ended, then close containers until one goes on.
      for (;;) {
        if (depth === level) {
          const n = out.count++;
          if (level === 1 && body[start] !== OPEN_BRACE && out.firstNotObject < 0) out.firstNotObject = n;
          if (deepest - level > maxDepth && out.firstTooDeep < 0) out.firstTooDeep = n;
          if (n < maxSpans) spans.push(start, i);
        }
        if (depth === 0) {
          i = trimStart(body, i, to);
          if (i !== to) fail(out, i);
          return;
        }
        i = trimStart(body, i, to);
        c = i < to ? body[i]! : END;
        const open = stack[depth - 1]!;
        if (c === COMMA) {
          i = trimStart(body, i + 1, to);
          if (open === OPEN_BRACE) {
            i = key(body, i, to);
            if (i < 0) return fail(out, ~i);
          }
          break;
        }
        if (c !== closing(open)) return fail(out, i);
        depth--;
        i++;
      }
    }
}

function fail(out: JsonScan, at: number): void {
  out.errorAt = at;
}

const closing = (open: number): number => (open === OPEN_BRACE ? CLOSE_BRACE : CLOSE_BRACKET);

function grow(stack: Uint8Array): Uint8Array {
  const bigger = new Uint8Array(stack.length * 2);
  bigger.set(stack);
  return bigger;
}

/** A member's key and colon at i; returns where its value starts, or ~offset of an error. */
function key(body: Buffer, i: number, to: number): number {
  if (i >= to || body[i] !== QUOTE) return ~i;
  i = string(body, i + 1, to);
  if (i < 0) return i;
  i = trimStart(body, i, to);
  if (i >= to || body[i] !== COLON) return ~i;
  return trimStart(body, i + 1, to);
}

/** The rest of a string whose opening quote is before i; returns the offset after its closing quote, or ~offset of an error. */
function string(body: Buffer, i: number, to: number): number {
  for (;;) {
    let c = 0;
    while (i < to && SPECIAL_IN_STRING[(c = body[i]!)] === 0) i++;
    if (i >= to) return ~to;
    if (c === QUOTE) return i + 1;
    if (c !== BACKSLASH) return ~i; // a control character
    const escape = i + 1 < to ? ESCAPE[body[i + 1]!]! : 0;
    if (escape === 0) return ~(i + 1);
    if (escape === 1) {
      i += 2;
    } else {
      for (let h = i + 2; h < i + 6; h++) if (h >= to || HEX[body[h]!] === 0) return ~h;
      i += 6;
    }
  }
}

/** A number at i (RFC 8259: -?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?); returns the offset after it, or ~offset of an error. */
function number(body: Buffer, i: number, to: number): number {
  if (body[i] === MINUS) i++;
  if (i >= to || !isDigit(body[i]!)) return ~i;
  if (body[i++] !== ZERO) while (i < to && isDigit(body[i]!)) i++;
  if (i < to && body[i] === DOT) {
    if (++i >= to || !isDigit(body[i]!)) return ~i;
    while (i < to && isDigit(body[i]!)) i++;
  }
  if (i < to && (body[i] === 0x65 || body[i] === 0x45)) {
    i++;
    if (i < to && (body[i] === PLUS || body[i] === MINUS)) i++;
    if (i >= to || !isDigit(body[i]!)) return ~i;
    while (i < to && isDigit(body[i]!)) i++;
  }
  return i;
}

const TRUE = Buffer.from('true');
const FALSE = Buffer.from('false');
const NULL = Buffer.from('null');

/** The literal `word` at i; returns the offset after it, or ~offset of an error. */
function literal(body: Buffer, i: number, to: number, word: Buffer | undefined): number {
  if (word === undefined) return ~i;
  for (let k = 0; k < word.length; k++, i++) if (i >= to || body[i] !== word[k]) return ~i;
  return i;
}

const isDigit = (c: number): boolean => c >= ZERO && c <= NINE;
