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
const END = -1;
// `[` and `{` differ in one bit, and each closing bracket is its opening one + 2 (`]` 0x5d, `}`
// 0x7d): the scan loop tests brackets with arithmetic rather than helpers, since every helper V8
// inlines there takes from what it will inline of the steps that matter more (measured: without
// this, stringRest was no longer inlined and strings with escapes took 8% more instructions).
const CASE_BIT = OPEN_BRACE ^ OPEN_BRACKET;
const TO_CLOSING = CLOSE_BRACE - OPEN_BRACE;

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

/** JSON's whitespace: a table, so that trimStart, inlined at every place the scan skips whitespace, is small. */
const WHITESPACE = new Uint8Array(256);
for (const c of [SPACE, TAB, LF, CR]) WHITESPACE[c] = 1;

export function trimStart(body: Buffer, from: number, to: number): number {
  while (from < to && WHITESPACE[body[from]!] === 1) from++;
  return from;
}

export function trimEnd(body: Buffer, from: number, to: number): number {
  while (to > from && WHITESPACE[body[to - 1]!] === 1) to--;
  return to;
}

/** CR and LF -> space; only for valid JSON texts and what separates them, where they are whitespace. */
export function blankLineBreaks(body: Buffer): void {
  for (let at = body.indexOf(LF); at !== -1; at = body.indexOf(LF, at + 1)) body[at] = SPACE;
  for (let at = body.indexOf(CR); at !== -1; at = body.indexOf(CR, at + 1)) body[at] = SPACE;
}

/** UTF-8 of U+0085, U+2028 and U+2029, line breaks to some readers (Python's str.splitlines, JavaScript before ES2019), and their JSON escapes. */
const SEPARATORS = [[0xc2, 0x85], [0xe2, 0x80, 0xa8], [0xe2, 0x80, 0xa9]].map((bytes) => Buffer.from(bytes));
const SEPARATOR_ESCAPES = ['\\u0085', '\\u2028', '\\u2029'].map((text) => Buffer.from(text, 'latin1'));

/**
 * `body` with every U+0085, U+2028 and U+2029 written as its JSON escape (`\u2028`), and `spans`
 * moved to match; `body` itself when it holds none (the usual case, for three native searches). In
 * valid JSON they can only be inside strings (outside them only ASCII is allowed), where the escape
 * is the same character to every JSON reader, and the stored line no reader can split. Bytes of
 * valid UTF-8 (checked before) match these sequences only as these characters.
 */
export function escapeLineSeparators(body: Buffer, spans: number[]): Buffer {
  const found: [at: number, kind: number][] = [];
  SEPARATORS.forEach((separator, kind) => {
    for (let at = body.indexOf(separator); at !== -1; at = body.indexOf(separator, at + separator.length)) found.push([at, kind]);
  });
  if (found.length === 0) return body;
  found.sort((a, b) => a[0] - b[0]);
  const growth = (kind: number) => SEPARATOR_ESCAPES[kind]!.length - SEPARATORS[kind]!.length;
  const out = Buffer.allocUnsafeSlow(body.length + found.reduce((n, [, kind]) => n + growth(kind), 0));
  let from = 0;
  let to = 0;
  for (const [at, kind] of found) {
    to += body.copy(out, to, from, at);
    to += SEPARATOR_ESCAPES[kind]!.copy(out, to);
    from = at + SEPARATORS[kind]!.length;
  }
  body.copy(out, to, from);
  // Spans ascend, and none starts or ends inside a string's character: each moves by what grew before it.
  let shift = 0;
  for (let i = 0, f = 0; i < spans.length; i++) {
    for (; f < found.length && found[f]![0] < spans[i]!; f++) shift += growth(found[f]![1]);
    spans[i] = spans[i]! + shift;
  }
  return out;
}

/**
 * Validates the JSON text body[from, to) (one value, whitespace around it allowed) into `out`.
 * The events are the top-level value when it is not an array, else the array's elements: their
 * nesting is counted from each event's own opening bracket (`{}` is 1) against `maxDepth`, and
 * the first `maxSpans` of them are appended to `spans` as [start, end) pairs. The whole text is
 * always checked, so a grammar error anywhere wins over every other finding.
 */
export function scanJson(body: Buffer, from: number, to: number, maxDepth: number, spans: number[], maxSpans: number, out: JsonScan): void {
  const i = trimStart(body, from, to);
  // Depth at which events start: inside the top-level array, or the top-level value itself.
  const level = begin(body, i, to, out);
  if (level >= 0) scanValue(body, i, to, level, maxDepth, spans, maxSpans, out);
}

/**
 * The value at `from` and what follows it up to `to`, into `out`; events start at depth `level`.
 *
 * One loop over a stack of open brackets, so that nesting as deep as the body allows costs no
 * call stack; its steps are small functions that V8 inlines, within a budget of bytecode per
 * function that decides most of the speed. Measured in CPU time per 50-event body (the median of
 * five processes, each the best of 25 rounds after a warm-up on every shape), against the loop with
 * every step written out: 6% less on analytics events, 15% less on long strings, 7% less on JSON
 * with spaces, 1% less on nesting, 2% more on strings with escapes and on numbers. Splits
 * that cost 5 to 15% were left out: a key read after `{` and after `,` rather than once at the top
 * of the loop, a push that returns the stack, strings handled by the same step as numbers.
 */
function scanValue(body: Buffer, from: number, to: number, level: number, maxDepth: number, spans: number[], maxSpans: number, out: JsonScan): void {
  // A local rather than the parameter: fewer instructions in the loop V8 makes (measured).
  let i = from;
  // stack[d] is the bracket open at depth d; stack[0], never written, is none.
  let stack: Uint8Array = STACK;
  let depth = 0;
  let deepest = 0;
  let start = from;
  for (;;) {
    // A value is expected at i, after its key in an object.
    if (stack[depth] === OPEN_BRACE) {
      i = key(body, i, to);
      if (i < 0) return fail(out, ~i);
    }
    if (depth === level) {
      start = i;
      deepest = depth;
    }
    const c = byteAt(body, i, to);
    if ((c | CASE_BIT) === OPEN_BRACE) {
      if (++depth === stack.length) stack = grow(stack);
      stack[depth] = c;
      deepest = Math.max(deepest, depth);
      i = trimStart(body, i + 1, to);
      if (byteAt(body, i, to) !== c + TO_CLOSING) continue;
      depth--;
      i++;
    } else {
      // Strings apart from scalar(): V8 inlines string() here, where most values are strings.
      i = c === QUOTE ? string(body, i + 1, to) : scalar(body, i, to, c);
      if (i < 0) return fail(out, ~i);
    }
    // A value ended at i: note an event that ended, then close containers until one goes on.
    for (;;) {
      if (depth === level) noteEvent(out, body, start, i, level, deepest - level > maxDepth, spans, maxSpans);
      i = trimStart(body, i, to);
      if (depth === 0) return end(out, i, to);
      const next = byteAt(body, i, to);
      if (next === COMMA) {
        i = trimStart(body, i + 1, to);
        break;
      }
      if (next !== stack[depth]! + TO_CLOSING) return fail(out, i);
      depth--;
      i++;
    }
  }
}

/** Resets `out` for the text whose first byte is at i and notes its top-level value; returns the depth its events start at, or -1 for a text of only whitespace. */
function begin(body: Buffer, i: number, to: number, out: JsonScan): number {
  out.errorAt = -1;
  out.count = 0;
  out.firstNotObject = -1;
  out.firstTooDeep = -1;
  const first = byteAt(body, i, to);
  out.top = first === END ? NOTHING : first === OPEN_BRACE ? OBJECT : first === OPEN_BRACKET ? ARRAY : SCALAR;
  return out.top === NOTHING ? -1 : out.top === ARRAY ? 1 : 0;
}

/** The top-level value ended, and what follows it is whitespace up to i: the text must end there. */
function end(out: JsonScan, i: number, to: number): void {
  if (i !== to) out.errorAt = i;
}

function fail(out: JsonScan, at: number): void {
  out.errorAt = at;
}

/** An event body[start, end) ended: counts it, notes the first that is not an object or too deep, keeps its span. */
function noteEvent(out: JsonScan, body: Buffer, start: number, end: number, level: number, tooDeep: boolean, spans: number[], maxSpans: number): void {
  const n = out.count++;
  if (level === 1 && body[start] !== OPEN_BRACE && out.firstNotObject < 0) out.firstNotObject = n;
  if (tooDeep && out.firstTooDeep < 0) out.firstTooDeep = n;
  if (n < maxSpans) spans.push(start, end);
}

const byteAt = (body: Buffer, i: number, to: number): number => (i < to ? body[i]! : END);

function grow(stack: Uint8Array): Uint8Array {
  const bigger = new Uint8Array(stack.length * 2);
  bigger.set(stack);
  return bigger;
}

/** A number or a literal at i, c its first byte (END for none); returns the offset after it, or ~offset of an error. */
function scalar(body: Buffer, i: number, to: number, c: number): number {
  return c === MINUS || isDigit(c) ? number(body, i, to) : literal(body, i, to, c);
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

/**
 * The rest of a string whose opening quote is before i; returns the offset after its closing
 * quote, or ~offset of an error. A run of plain bytes to the quote is read here, anything else by
 * stringRest: this step is read for every key and most values, and V8 inlines it at both places
 * only while it is small (inlined twice whole, it left too little room for the other steps, and
 * events of long strings took up to 25% more CPU when validated after warming up on other events).
 */
function string(body: Buffer, i: number, to: number): number {
  let c = 0;
  while (i < to && SPECIAL_IN_STRING[(c = body[i]!)] === 0) i++;
  return c === QUOTE && i < to ? i + 1 : stringRest(body, i, to);
}

/** string() on from where its plain run stopped: escapes, a control character, or the end of the text. */
function stringRest(body: Buffer, i: number, to: number): number {
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
  if (i < to && body[i] === ZERO) i++;
  else i = digits(body, i, to);
  if (i >= 0 && i < to && body[i] === DOT) i = digits(body, i + 1, to);
  if (i >= 0 && i < to && (body[i] === 0x65 || body[i] === 0x45)) i = exponent(body, i + 1, to);
  return i;
}

/** An exponent's sign and digits at i; returns the offset after them, or ~offset of an error. */
function exponent(body: Buffer, i: number, to: number): number {
  if (i < to && (body[i] === PLUS || body[i] === MINUS)) i++;
  return digits(body, i, to);
}

/** One digit or more at i; returns the offset after them, or ~i. */
function digits(body: Buffer, i: number, to: number): number {
  if (i >= to || !isDigit(body[i]!)) return ~i;
  i++;
  while (i < to && isDigit(body[i]!)) i++;
  return i;
}

const TRUE = Buffer.from('true');
const FALSE = Buffer.from('false');
const NULL = Buffer.from('null');

/** The literal that starts with c at i; returns the offset after it, or ~offset of an error. */
function literal(body: Buffer, i: number, to: number, c: number): number {
  const word = c === 0x74 ? TRUE : c === 0x66 ? FALSE : c === 0x6e ? NULL : undefined;
  if (word === undefined) return ~i;
  for (let k = 0; k < word.length; k++, i++) if (i >= to || body[i] !== word[k]) return ~i;
  return i;
}

const isDigit = (c: number): boolean => c >= ZERO && c <= NINE;
