// Request body -> where each event is in it, or the 4xx that says what is wrong, as docs/api.md lists them.
//
// Events are kept as the bytes the client sent, never re-serialised: big integers, number
// formatting and key order reach S3 exactly as sent. An event is a byte span of the buffer kept
// for its request (the body, or its events alone when the body is mostly something else): no
// per-event object or string until the batch is written out. CR and LF can only be whitespace in
// valid JSON, so they are overwritten with spaces in that buffer: every event is one line of the
// stored JSON-lines object even when the client pretty-printed it. The request body itself is
// only read (it may be uWS's memory).
import { isUtf8 } from 'node:buffer';
import zlib from 'node:zlib';
import { blankLineBreaks, depthOf, splitArrayOfObjects, trimEnd, trimStart } from './json-scan.js';

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
  if (!isUtf8(body)) return NOT_UTF8;
  const spans = format === 'json' ? parseJson(body, limits) : parseNdjson(body, limits);
  if (spans instanceof Rejection) return spans;
  return hold(body, spans, owned);
}

function parseJson(body: Buffer, { maxEvents, maxDepth }: ParseLimits): number[] | Rejection {
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
    if (depthOf(body, start, end) > maxDepth) return tooDeep(maxDepth, 'the event');
    return [start, end];
  }
  if (value.length === 0) return EMPTY_BODY;
  if (value.length > maxEvents) {
    return new Rejection(400, 'too_many_events', `${value.length} events in one request, MAX_EVENTS_PER_REQUEST is ${maxEvents}`);
  }
  for (let i = 0; i < value.length; i++) {
    if (!isObject(value[i])) return new Rejection(400, 'not_an_object', `event at index ${i} is not a JSON object`, { index: i });
  }
  const spans = splitArrayOfObjects(body, value.length, maxDepth);
  return Array.isArray(spans) ? spans : tooDeep(maxDepth, `event at index ${spans.tooDeep}`, { index: spans.tooDeep });
}

function parseNdjson(body: Buffer, { maxEvents, maxDepth }: ParseLimits): number[] | Rejection {
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
    if (depthOf(body, start, end) > maxDepth) return tooDeep(maxDepth, `line ${line}`, { line });
    spans.push(start, end);
  }
  return spans.length === 0 ? EMPTY_BODY : spans;
}

/**
 * The events in a buffer of our own. The whole body is kept (or copied in one go) when it is
 * mostly events, as a JSON array or NDJSON body is; otherwise each event is copied next to the
 * last, so padding never occupies the channel. CR and LF, whitespace within valid JSON, become
 * spaces (a CR is a line break to some readers: never let one through).
 */
function hold(body: Buffer, spans: number[], owned: boolean): ParsedEvents {
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
  for (let i = 0; i < spans.length; i += 2) blankLineBreaks(held, spans[i]!, spans[i + 1]!);
  return { body: held, spans, bytes: held.length };
}

/** A copy in memory of its own (never a slice of the pool): what is held costs what it counts. */
function exactCopy(body: Buffer, from: number, to: number): Buffer {
  const copy = Buffer.allocUnsafeSlow(to - from);
  body.copy(copy, 0, from, to);
  return copy;
}

function isObject(value: unknown): boolean {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
