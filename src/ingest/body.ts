// Request body -> where each event is in it, or the 4xx that says what is wrong (SPEC §2).
//
// Events are kept as the bytes the client sent, never re-serialised: big integers, number
// formatting and key order reach S3 exactly as sent. An event is a byte span of the request
// body: no per-event object, string or copy until the batch is written out. CR and LF can only
// be whitespace in valid JSON, so they are overwritten with spaces in the body: every event is
// one line of the stored JSON-lines object even when the client pretty-printed it.
import { isUtf8 } from 'node:buffer';
import zlib from 'node:zlib';

export type BodyFormat = 'json' | 'ndjson';

export class Rejection {
  constructor(
    readonly status: 400 | 413,
    readonly error: string,
    readonly message: string,
    /** Where in a batch the problem is: `index` in a JSON array, 1-based `line` in NDJSON. */
    readonly at?: { index: number } | { line: number },
  ) {}

  toJSON(): object {
    return { error: this.error, message: this.message, ...this.at };
  }
}

export interface ParsedEvents {
  /** The body, owned by the caller; CR and LF outside strings already turned into spaces. */
  readonly body: Buffer;
  /** Event i is body[spans[2i], spans[2i + 1]). */
  readonly spans: number[];
  /** Bytes of all events together. */
  readonly bytes: number;
}

export const BODY_TOO_LARGE = new Rejection(413, 'body_too_large', 'body exceeds MAX_BODY_BYTES');
const DECOMPRESSED_TOO_LARGE = new Rejection(413, 'body_too_large', 'decompressed body exceeds MAX_BODY_BYTES');
const EMPTY_BODY = new Rejection(400, 'empty_body', 'body holds no events');
const NOT_UTF8 = new Rejection(400, 'invalid_json', 'body is not valid UTF-8');
const NOT_AN_OBJECT = new Rejection(400, 'not_an_object', 'body must be a JSON object or an array of JSON objects');
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

/** Gunzips without ever holding more than `maxBytes` of output, so a gzip bomb costs nothing. */
export function gunzipCapped(body: Buffer, maxBytes: number): Buffer | Rejection {
  try {
    return zlib.gunzipSync(body, { maxOutputLength: maxBytes });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') return DECOMPRESSED_TOO_LARGE;
    return new Rejection(400, 'invalid_gzip', `body is not valid gzip: ${(err as Error).message}`);
  }
}

/** Parses `body` in place (it must be the caller's own copy: CR and LF are overwritten). */
export function parseEvents(body: Buffer, format: BodyFormat, maxEvents: number): ParsedEvents | Rejection {
  if (!isUtf8(body)) return NOT_UTF8;
  const spans = format === 'json' ? parseJson(body, maxEvents) : parseNdjson(body, maxEvents);
  if (spans instanceof Rejection) return spans;
  let bytes = 0;
  for (let i = 0; i < spans.length; i += 2) bytes += spans[i + 1]! - spans[i]!;
  return { body, spans, bytes };
}

function parseJson(body: Buffer, maxEvents: number): number[] | Rejection {
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch (err) {
    if (trimStart(body, 0, body.length) === body.length) return EMPTY_BODY;
    return new Rejection(400, 'invalid_json', (err as Error).message);
  }
  if (!Array.isArray(value)) {
    if (!isObject(value)) return NOT_AN_OBJECT;
    const start = trimStart(body, 0, body.length);
    const end = trimEnd(body, start, body.length);
    blankLineBreaks(body, start, end);
    return [start, end];
  }
  if (value.length === 0) return EMPTY_BODY;
  if (value.length > maxEvents) {
    return new Rejection(400, 'too_many_events', `${value.length} events in one request, MAX_EVENTS_PER_REQUEST is ${maxEvents}`);
  }
  for (let i = 0; i < value.length; i++) {
    if (!isObject(value[i])) return new Rejection(400, 'not_an_object', `event at index ${i} is not a JSON object`, { index: i });
  }
  blankLineBreaks(body, 0, body.length);
  return splitArrayOfObjects(body, value.length);
}

function parseNdjson(body: Buffer, maxEvents: number): number[] | Rejection {
  const spans: number[] = [];
  let line = 0;
  for (let next = 0; next < body.length; ) {
    let lf = body.indexOf(LF, next);
    if (lf === -1) lf = body.length;
    line++;
    const start = trimStart(body, next, lf);
    const end = trimEnd(body, start, lf);
    next = lf + 1;
    if (start === end) continue;
    if (spans.length === maxEvents * 2) {
      return new Rejection(400, 'too_many_events', `more than MAX_EVENTS_PER_REQUEST (${maxEvents}) events in one request`, { line });
    }
    let value: unknown;
    try {
      value = JSON.parse(body.toString('utf8', start, end));
    } catch (err) {
      return new Rejection(400, 'invalid_json', `line ${line}: ${(err as Error).message}`, { line });
    }
    if (!isObject(value)) return new Rejection(400, 'not_an_object', `line ${line} is not a JSON object`, { line });
    // A CR is whitespace to JSON but a line break to some readers: never let one through.
    blankLineBreaks(body, start, end);
    spans.push(start, end);
  }
  return spans.length === 0 ? EMPTY_BODY : spans;
}

function isObject(value: unknown): boolean {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const isSpace = (c: number | undefined): boolean => c === SPACE || c === LF || c === CR || c === TAB;

function trimStart(body: Buffer, from: number, to: number): number {
  while (from < to && isSpace(body[from])) from++;
  return from;
}

function trimEnd(body: Buffer, from: number, to: number): number {
  while (to > from && isSpace(body[to - 1])) to--;
  return to;
}

/** CR and LF -> space in [from, to); only for text already parsed as JSON, where they are whitespace. */
function blankLineBreaks(body: Buffer, from: number, to: number): void {
  for (let at = body.indexOf(LF, from); at !== -1 && at < to; at = body.indexOf(LF, at + 1)) body[at] = SPACE;
  for (let at = body.indexOf(CR, from); at !== -1 && at < to; at = body.indexOf(CR, at + 1)) body[at] = SPACE;
}

/**
 * The byte spans of the objects of a JSON array already validated as `count` objects. Bytes
 * are enough: every JSON structural character is ASCII, and no byte of a multi-byte UTF-8
 * sequence is. Only braces outside strings move the depth; strings are skipped, escapes too.
 */
function splitArrayOfObjects(body: Buffer, count: number): number[] {
  const spans = new Array<number>(count * 2);
  let n = 0;
  let depth = 0;
  for (let i = body.indexOf(OPEN_BRACKET) + 1; n < count; i++) {
    const c = body[i];
    if (c === QUOTE) {
      for (i++; body[i] !== QUOTE; i++) if (body[i] === BACKSLASH) i++;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (depth++ === 0) spans[2 * n] = i;
    } else if ((c === CLOSE_BRACE || c === CLOSE_BRACKET) && --depth === 0) {
      spans[2 * n++ + 1] = i + 1;
    }
  }
  return spans;
}
