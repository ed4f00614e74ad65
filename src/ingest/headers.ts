// What a POST's headers say about its body: its format, and its length if it has a valid one.
import type { HttpRequest } from 'uWebSockets.js';
import type { BodyFormat } from './body.js';

export function bodyFormat(contentType: string): BodyFormat | undefined {
  const semicolon = contentType.indexOf(';');
  const type = (semicolon === -1 ? contentType : contentType.slice(0, semicolon)).trim().toLowerCase();
  if (type === 'application/json' || type === 'text/plain') return 'json';
  if (type === 'application/x-ndjson') return 'ndjson';
  return undefined;
}

// Module state, so that checking every header costs no closure per request.
let firstLength = '';
let conflictingLength = false;
const checkLength = (key: string, value: string): void => {
  if (key === 'content-length' && value !== firstLength) conflictingLength = true;
};
let lengthSeen = false;
const noteLength = (key: string): void => {
  if (key === 'content-length') lengthSeen = true;
};

/** For a request whose Content-Length reads empty: 0 if it has none at all, NaN if it has an empty one. */
export function noLength(req: HttpRequest): number {
  lengthSeen = false;
  req.forEach(noteLength);
  return lengthSeen ? NaN : 0;
}

/**
 * Content-Length as a number; NaN when it is not one plain decimal number, or when the request
 * carries two different ones (uWS frames the body by the first; a proxy might use the other).
 */
export function contentLength(req: HttpRequest, header: string): number {
  if (!/^\d+$/.test(header)) return NaN;
  firstLength = header;
  conflictingLength = false;
  req.forEach(checkLength);
  return conflictingLength ? NaN : Number(header);
}

const KEY = /^[\x20-\x7e]{1,128}$/;

/**
 * The request's Idempotency-Key: the header, else `?idempotency_key=` (navigator.sendBeacon cannot
 * set headers); '' when it has none, undefined when it is not 1 to 128 printable ASCII characters.
 */
export function idempotencyKey(req: HttpRequest): string | undefined {
  let key = req.getHeader('idempotency-key');
  // The query is parsed only when there is one. An empty key, in either, is none (uWS reads an empty header as a missing one).
  if (key === '' && req.getQuery() !== '') key = req.getQuery('idempotency_key') ?? '';
  return key === '' || KEY.test(key) ? key : undefined;
}

let origins = 0;
const countOrigin = (key: string): void => {
  if (key === 'origin') origins++;
};

/**
 * The Origin header; '' without one; undefined when the request carries more than one (no browser
 * sends two: uWS reads the first, a proxy might check the other). Only a request whose first
 * Origin is not empty is looked through, so that SDKs on servers, which send none, pay nothing.
 */
export function requestOrigin(req: HttpRequest): string | undefined {
  const origin = req.getHeader('origin');
  if (origin === '') return '';
  origins = 0;
  req.forEach(countOrigin);
  return origins > 1 ? undefined : origin;
}
