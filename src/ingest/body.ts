// Request body -> where each event is in it, or the 4xx that says what is wrong, as docs/api.md lists them.
//
// Events are kept as the bytes the client sent, never re-serialised: big integers, number
// formatting and key order reach S3 exactly as sent. An event is a byte span of the buffer kept
// for its request (the body, or its events alone when the body is mostly something else): no
// per-event object or string until the batch is written out. CR and LF can only be whitespace in
// valid JSON, so they are overwritten with spaces in that buffer: every event is one line of the
// stored JSON-lines object even when the client pretty-printed it. The request body itself is
// only read (it may be uWS's memory).
import { isAscii, isUtf8 } from 'node:buffer';
import zlib from 'node:zlib';
import { blankLineBreaks, escapeLineSeparators, JsonScan, NOTHING, OBJECT, SCALAR, scanJson, trimEnd, trimStart } from './json-scan.js';

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
  /**
   * The events' bytes, in a buffer of the caller's own (never a view of uWS's memory), with CR
   * and LF inside events turned into spaces. When the request held much more than its events
   * (padding, whitespace), only the events are kept: memory held is what the events need.
   */
  readonly body: Buffer;
  /** Event i is body[spans[2i], spans[2i + 1]). */
  readonly spans: number[];
  /** Bytes held: body.length. */
  readonly bytes: number;
}

export interface ParseLimits {
  readonly maxEvents: number;
  /** Nesting of objects and arrays within one event; `{}` is 1. */
  readonly maxDepth: number;
}

export const BODY_TOO_LARGE = new Rejection(413, 'body_too_large', 'body exceeds MAX_BODY_BYTES');
const DECOMPRESSED_TOO_LARGE = new Rejection(413, 'body_too_large', 'decompressed body exceeds MAX_BODY_BYTES');
const EMPTY_BODY = new Rejection(400, 'empty_body', 'body holds no events');
const NOT_UTF8 = new Rejection(400, 'invalid_json', 'body is not valid UTF-8');
const NOT_AN_OBJECT = new Rejection(400, 'not_an_object', 'body must be a JSON object or an array of JSON objects');
const tooDeep = (maxDepth: number, what: string, at?: { index: number } | { line: number }): Rejection =>
  new Rejection(400, 'too_deep', `${what} nests objects and arrays deeper than MAX_EVENT_DEPTH (${maxDepth})`, at);
/** Keep the whole body when at most this share of it is not events; otherwise copy the events alone. */
const MAX_WASTE_SHARE = 1 / 8;
const LF = 0x0a;

/** Gunzips without ever holding more than `maxBytes` of output, so a gzip bomb costs nothing. */
export function gunzipCapped(body: Buffer, maxBytes: number): Buffer | Rejection {
  try {
    return zlib.gunzipSync(body, { maxOutputLength: maxBytes });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') return DECOMPRESSED_TOO_LARGE;
    return new Rejection(400, 'invalid_gzip', `body is not valid gzip: ${(err as Error).message}`);
  }
}

/**
 * Validates `body` and keeps its events. `body` is only read: it may be a view of uWS's memory.
 * `owned`: the body is already the caller's own buffer, of exactly its length (a gunzip result),
 * so it can be kept as it is instead of copied.
 */
export function parseEvents(body: Buffer, format: BodyFormat, limits: ParseLimits, owned = false): ParsedEvents | Rejection {
  // Most bodies are ASCII, which is UTF-8 and holds no line separator to escape: one native pass.
  const ascii = isAscii(body);
  if (!ascii && !isUtf8(body)) return NOT_UTF8;
  const spans = format === 'json' ? parseJson(body, limits) : parseNdjson(body, limits);
  if (spans instanceof Rejection) return spans;
  return hold(body, spans, owned, ascii);
}

function parseJson(body: Buffer, { maxEvents, maxDepth }: ParseLimits): number[] | Rejection {
  const spans: number[] = [];
  const scan = new JsonScan();
  scanJson(body, 0, body.length, maxDepth, spans, maxEvents, scan);
  if (scan.errorAt >= 0) return invalidJson(body, scan.errorAt, 0);
  switch (scan.top) {
    case NOTHING:
      return EMPTY_BODY;
    case SCALAR:
      return NOT_AN_OBJECT;
    case OBJECT:
      return scan.firstTooDeep < 0 ? spans : tooDeep(maxDepth, 'the event');
  }
  if (scan.count === 0) return EMPTY_BODY;
  if (scan.count > maxEvents) {
    return new Rejection(400, 'too_many_events', `${scan.count} events in one request, MAX_EVENTS_PER_REQUEST is ${maxEvents}`);
  }
  const at = scan.firstNotObject;
  if (at >= 0) return new Rejection(400, 'not_an_object', `event at index ${at} is not a JSON object`, { index: at });
  const deep = scan.firstTooDeep;
  return deep < 0 ? spans : tooDeep(maxDepth, `event at index ${deep}`, { index: deep });
}

function parseNdjson(body: Buffer, { maxEvents, maxDepth }: ParseLimits): number[] | Rejection {
  const spans: number[] = [];
  const scan = new JsonScan();
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
    scanJson(body, start, end, maxDepth, spans, 1, scan);
    if (scan.errorAt >= 0) {
      const { message } = invalidJson(body, scan.errorAt, start, end);
      return new Rejection(400, 'invalid_json', `line ${line}: ${message}`, { line });
    }
    if (scan.top !== OBJECT) return new Rejection(400, 'not_an_object', `line ${line} is not a JSON object`, { line });
    if (scan.firstTooDeep >= 0) return tooDeep(maxDepth, `line ${line}`, { line });
  }
  return spans.length === 0 ? EMPTY_BODY : spans;
}

/** Says what is wrong at `at` (an offset in body), counted from `from`; `to` ends the text. */
function invalidJson(body: Buffer, at: number, from: number, to = body.length): Rejection {
  const c = body[at];
  let what: string;
  if (c === undefined || at >= to) what = 'end of input';
  else if (c < 0x20) what = `control character 0x${c.toString(16).padStart(2, '0')}`;
  else what = `'${String.fromCodePoint(body.toString('utf8', at, Math.min(at + 4, to)).codePointAt(0)!)}'`;
  return new Rejection(400, 'invalid_json', `invalid JSON: unexpected ${what} at byte ${at - from}`);
}

/**
 * The events in a buffer of our own. The whole body is kept (or copied in one go) when it is
 * mostly events, as a JSON array or NDJSON body is; otherwise each event is copied next to the
 * last, so padding never occupies the channel. CR and LF, whitespace within valid JSON, become
 * spaces (a CR is a line break to some readers: never let one through); U+0085, U+2028 and U+2029,
 * which can only be inside strings, become their escapes for the same reason (an `ascii` body has none).
 */
function hold(body: Buffer, spans: number[], owned: boolean, ascii: boolean): ParsedEvents {
  let eventBytes = 0;
  for (let i = 0; i < spans.length; i += 2) eventBytes += spans[i + 1]! - spans[i]!;
  let held: Buffer;
  if (body.length - eventBytes <= body.length * MAX_WASTE_SHARE) {
    // Kept as is only if it is all its memory: a gunzip result is often a slice of zlib's 64 KiB
    // chunk, and a small Buffer a slice of the shared 8 KiB pool, which the slice would pin.
    held = owned && body.byteLength === body.buffer.byteLength ? body : exactCopy(body, 0, body.length);
  } else {
    held = Buffer.allocUnsafeSlow(eventBytes);
    let at = 0;
    for (let i = 0; i < spans.length; i += 2) {
      const start = at;
      at += body.copy(held, at, spans[i], spans[i + 1]);
      spans[i] = start;
      spans[i + 1] = at;
    }
  }
  // Once over all of it: what lies between the events is whitespace and separators, and one search
  // per event would run on to the end of the body each time (quadratic in the number of events).
  blankLineBreaks(held);
  if (!ascii) held = escapeLineSeparators(held, spans);
  return { body: held, spans, bytes: held.length };
}

/** A copy in memory of its own (never a slice of the pool): what is held costs what it counts. */
function exactCopy(body: Buffer, from: number, to: number): Buffer {
  const copy = Buffer.allocUnsafeSlow(to - from);
  body.copy(copy, 0, from, to);
  return copy;
}
