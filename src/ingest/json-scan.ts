// Byte scans of JSON text: whitespace, line breaks, nesting depth, the spans of an array's objects.
//
// Bytes are enough: every JSON structural character is ASCII, and no byte of a multi-byte UTF-8
// sequence is. Strings are skipped, escapes too. Only for text JSON.parse already accepted.
const QUOTE = 34;
const SPACE = 0x20;
const TAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;
const BACKSLASH = 92;
const OPEN_BRACE = 123;
const CLOSE_BRACE = 125;
const OPEN_BRACKET = 91;
const CLOSE_BRACKET = 93;

const isSpace = (c: number | undefined): boolean => c === SPACE || c === LF || c === CR || c === TAB;

export function trimStart(body: Buffer, from: number, to: number): number {
  while (from < to && isSpace(body[from])) from++;
  return from;
}

export function trimEnd(body: Buffer, from: number, to: number): number {
  while (to > from && isSpace(body[to - 1])) to--;
  return to;
}

/** CR and LF -> space in [from, to); only for text already parsed as JSON, where they are whitespace. */
export function blankLineBreaks(body: Buffer, from: number, to: number): void {
  for (let at = body.indexOf(LF, from); at !== -1 && at < to; at = body.indexOf(LF, at + 1)) body[at] = SPACE;
  for (let at = body.indexOf(CR, from); at !== -1 && at < to; at = body.indexOf(CR, at + 1)) body[at] = SPACE;
}

/**
 * The deepest nesting of objects and arrays in valid JSON text [from, to).
 */
export function depthOf(body: Buffer, from: number, to: number): number {
  let depth = 0;
  let deepest = 0;
  for (let i = from; i < to; i++) {
    const c = body[i];
    if (c === QUOTE) {
      for (i++; body[i] !== QUOTE; i++) if (body[i] === BACKSLASH) i++;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > deepest) deepest = depth;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--;
    }
  }
  return deepest;
}

/**
 * The byte spans of the objects of a JSON array already validated as `count` objects, found as
 * depthOf finds nesting; depth counts from each event's opening brace, as MAX_EVENT_DEPTH does.
 */
export function splitArrayOfObjects(body: Buffer, count: number, maxDepth: number): number[] | { tooDeep: number } {
  const spans = new Array<number>(count * 2);
  let n = 0;
  let depth = 0;
  for (let i = body.indexOf(OPEN_BRACKET) + 1; n < count; i++) {
    const c = body[i];
    if (c === QUOTE) {
      for (i++; body[i] !== QUOTE; i++) if (body[i] === BACKSLASH) i++;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (depth++ === 0) spans[2 * n] = i;
      else if (depth > maxDepth) return { tooDeep: n };
    } else if ((c === CLOSE_BRACE || c === CLOSE_BRACKET) && --depth === 0) {
      spans[2 * n++ + 1] = i + 1;
    }
  }
  return spans;
}
