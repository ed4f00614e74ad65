// Request body -> the raw JSON text of each event, or the 4xx that says what is wrong (SPEC §2).
//
// Events are kept as the text the client sent, not re-serialised: big integers, number
// formatting and key order reach S3 exactly as sent, and nothing is stringified twice.
// CR and LF can only be whitespace in valid JSON, so they become spaces: every event is
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
  readonly events: string[];
  /** UTF-8 bytes of all event texts together. */
  readonly bytes: number;
}

export const BODY_TOO_LARGE = new Rejection(413, 'body_too_large', 'body exceeds MAX_BODY_BYTES');
const DECOMPRESSED_TOO_LARGE = new Rejection(413, 'body_too_large', 'decompressed body exceeds MAX_BODY_BYTES');
const EMPTY_BODY = new Rejection(400, 'empty_body', 'body holds no events');
const NOT_UTF8 = new Rejection(400, 'invalid_json', 'body is not valid UTF-8');
const NOT_AN_OBJECT = new Rejection(400, 'not_an_object', 'body must be a JSON object or an array of JSON objects');
const CRS_AND_LFS = /[\r\n]+/g;
const QUOTE = 34;
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

export function parseEvents(body: Buffer, format: BodyFormat, maxEvents: number): ParsedEvents | Rejection {
  if (!isUtf8(body)) return NOT_UTF8;
  const text = body.toString('utf8');
  // Equal lengths mean every character is one byte: event byte counts are then string lengths.
  const ascii = text.length === body.length;
  const parsed = format === 'json' ? parseJson(text, maxEvents) : parseNdjson(text, maxEvents);
  if (parsed instanceof Rejection) return parsed;
  let bytes = 0;
  for (const event of parsed) bytes += ascii ? event.length : Buffer.byteLength(event);
  return { events: parsed, bytes };
}

function parseJson(text: string, maxEvents: number): string[] | Rejection {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    if (text.trim() === '') return EMPTY_BODY;
    return new Rejection(400, 'invalid_json', (err as Error).message);
  }
  // indexOf is a memchr; a regex test here cost more than the rest of a small request.
  const flat = text.indexOf('\n') === -1 && text.indexOf('\r') === -1 ? text : text.replace(CRS_AND_LFS, ' ');
  if (!Array.isArray(value)) return isObject(value) ? [flat.trim()] : NOT_AN_OBJECT;
  if (value.length === 0) return EMPTY_BODY;
  if (value.length > maxEvents) {
    return new Rejection(400, 'too_many_events', `${value.length} events in one request, MAX_EVENTS_PER_REQUEST is ${maxEvents}`);
  }
  for (let i = 0; i < value.length; i++) {
    if (!isObject(value[i])) return new Rejection(400, 'not_an_object', `event at index ${i} is not a JSON object`, { index: i });
  }
  return splitArrayOfObjects(flat, value.length);
}

function parseNdjson(text: string, maxEvents: number): string[] | Rejection {
  // A CR is whitespace to JSON but a line break to some readers: never let one through.
  const flat = text.includes('\r') ? text.replaceAll('\r', ' ') : text;
  const events: string[] = [];
  let line = 0;
  for (let start = 0; start < flat.length; ) {
    let end = flat.indexOf('\n', start);
    if (end === -1) end = flat.length;
    line++;
    const candidate = flat.slice(start, end).trim();
    start = end + 1;
    if (candidate === '') continue;
    if (events.length === maxEvents) {
      return new Rejection(400, 'too_many_events', `more than MAX_EVENTS_PER_REQUEST (${maxEvents}) events in one request`, { line });
    }
    let value: unknown;
    try {
      value = JSON.parse(candidate);
    } catch (err) {
      return new Rejection(400, 'invalid_json', `line ${line}: ${(err as Error).message}`, { line });
    }
    if (!isObject(value)) return new Rejection(400, 'not_an_object', `line ${line} is not a JSON object`, { line });
    events.push(candidate);
  }
  return events.length === 0 ? EMPTY_BODY : events;
}

function isObject(value: unknown): boolean {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Cuts the text of a JSON array already validated as `count` objects into the text of each
 * object. Only braces outside strings move the depth; strings are skipped to their closing quote.
 */
function splitArrayOfObjects(text: string, count: number): string[] {
  const out = new Array<string>(count);
  let n = 0;
  let depth = 0;
  let start = 0;
  for (let i = text.indexOf('[') + 1; n < count; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      i = closingQuote(text, i);
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (depth++ === 0) start = i;
    } else if ((c === CLOSE_BRACE || c === CLOSE_BRACKET) && --depth === 0) {
      out[n++] = text.slice(start, i + 1);
    }
  }
  return out;
}

function closingQuote(text: string, open: number): number {
  let q = text.indexOf('"', open + 1);
  for (;;) {
    let backslashes = 0;
    while (text.charCodeAt(q - 1 - backslashes) === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return q;
    q = text.indexOf('"', q + 1);
  }
}
