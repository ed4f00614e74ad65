// Answers: status lines, the JSON error bodies, and one send() that counts every answer.
import type { HttpResponse } from 'uWebSockets.js';
import { DEFAULT_HTTP_IDLE_TIMEOUT_S } from '../config/table.js';
import type { HttpCounts, Status } from '../metrics/http.js';

const STATUS_LINES: Record<Status, string> = {
  '200': '200 OK', '202': '202 Accepted', '204': '204 No Content', '400': '400 Bad Request',
  '401': '401 Unauthorized', '403': '403 Forbidden', '404': '404 Not Found', '405': '405 Method Not Allowed',
  '409': '409 Conflict', '413': '413 Payload Too Large', '415': '415 Unsupported Media Type', '422': '422 Unprocessable Content', '500': '500 Internal Server Error',
  '503': '503 Service Unavailable',
};

export const errorBody = (error: string, message: string): string => JSON.stringify({ error, message });
export const QUEUE_FULL = errorBody('queue_full', 'the event channel is full; retry after the Retry-After delay');
export const DLQ_FULL = errorBody('queue_full', 'the dead-letter queue is full and S3 is not taking batches: this instance takes no events until it has room; retry after the Retry-After delay, or send to another instance');
export const ACK_TIMEOUT = errorBody('ack_timeout', 'the events were taken but not confirmed stored within ACK_TIMEOUT_MS: they may or may not be stored, so a retry may store them twice');
export const NOT_STORED = errorBody('not_stored', 'the events could not be made durable (ACK_LEVEL); retry after the Retry-After delay');
export const WAL_FAILED = errorBody('not_stored', 'a write to the write-ahead log failed: this instance refuses events until it is restarted');
export const AWAITING_ANSWERS = errorBody('awaiting_answers', 'too many requests are waiting for their answer from the pipeline; retry after the Retry-After delay');
export const BUSY = errorBody('busy', 'too many request bodies or connections at once; retry after the Retry-After delay');
export const SHUTTING_DOWN = errorBody('shutting_down', 'the server is shutting down; send to another instance');
export const UNAUTHORIZED = errorBody('unauthorized', 'send a valid API key in x-api-key, Authorization: Bearer, or ?api_key=');
export const TWO_ORIGINS = errorBody('invalid_origin', 'the request carries more than one Origin header');
export const ORIGIN_NOT_ALLOWED = errorBody('origin_not_allowed', 'the Origin header names an origin not in CORS_ORIGINS');
export const UNSUPPORTED_TYPE = errorBody('unsupported_media_type', 'Content-Type must be application/json, application/x-ndjson or text/plain');
export const UNSUPPORTED_ENCODING = errorBody('unsupported_encoding', 'Content-Encoding must be gzip or identity');
export const INVALID_LENGTH = errorBody('invalid_content_length', 'Content-Length must be one decimal number, sent once');
export const INVALID_IDEMPOTENCY_KEY = errorBody('invalid_idempotency_key', 'Idempotency-Key (or ?idempotency_key=) must be 1 to 128 printable ASCII characters');
export const IDEMPOTENCY_KEY_REUSED = errorBody('idempotency_key_reused', 'this Idempotency-Key came with another body within IDEMPOTENCY_WINDOW_SECONDS: use a new key for new events');
export const IN_PROGRESS = errorBody('in_progress', 'the first request with this Idempotency-Key is not answered yet; retry after the Retry-After delay to get its answer');
export const NOT_FOUND = errorBody('not_found', 'no such endpoint; events go to POST /v1/events');
export const METHOD_NOT_ALLOWED = errorBody('method_not_allowed', 'method not allowed on this endpoint');

/**
 * The headers of every answer to an allowed Origin. Credentials: navigator.sendBeacon always sends
 * a credentialed request, whose answer the browser drops without this (and the server reads no
 * cookies, so it grants nothing). Exposed: what a client reads of an answer beyond the safelisted
 * headers (Retry-After is not one).
 */
export const CORS_ANSWER_HEADERS: readonly [string, string][] = [
  ['vary', 'origin'],
  ['access-control-allow-credentials', 'true'],
  ['access-control-expose-headers', 'retry-after, idempotent-replayed'],
];

/** Flags of send(). CLOSE: the answer is sent, with `connection: close`, but not ended: end('') or close() it. */
export const CLOSE = 1;
export const RETRY_AFTER = 2;
/**
 * uWS 20 closes the connection right after the handler when it cannot frame the request (a
 * Content-Length that is not a number, or of 10 digits or more), dropping whatever the handler
 * wrote into its 16 KiB cork buffer. An answer larger than that buffer is written at once.
 */
export const FLUSH_NOW = 4;
/** `idempotent-replayed: true`: the answer is a repeat's, given again (src/idempotency.ts). */
export const REPLAYED = 8;
const FLUSH_PADDING = ' '.repeat(17 * 1024);

export class Responder {
  readonly #keepAlive: string;

  /**
   * `keepAliveS`: HTTP_IDLE_TIMEOUT_S, said in `Keep-Alive: timeout=` on every answer after which
   * the connection stays open, so that a client (or a proxy) stops reusing an idle connection
   * before the server closes it.
   */
  constructor(
    private readonly counts: HttpCounts,
    keepAliveS = DEFAULT_HTTP_IDLE_TIMEOUT_S,
  ) {
    this.#keepAlive = `timeout=${keepAliveS}`;
  }

  /**
   * One JSON answer. `corsOrigin`: an allowed Origin to echo, or ''. A client that does not read
   * its answers (pipelining without reading) makes uWS buffer them in user space without bound:
   * once the kernel's send buffer is full, the connection is closed instead.
   */
  send(res: HttpResponse, status: Status, json: string, corsOrigin = '', flags = 0, allow?: string): void {
    this.counts.requests[status]++;
    res.writeStatus(STATUS_LINES[status]).writeHeader('content-type', 'application/json');
    if (allow !== undefined) res.writeHeader('allow', allow);
    if ((flags & RETRY_AFTER) !== 0) res.writeHeader('retry-after', '1');
    if ((flags & REPLAYED) !== 0) res.writeHeader('idempotent-replayed', 'true');
    if (corsOrigin !== '') {
      res.writeHeader('access-control-allow-origin', corsOrigin);
      for (const [name, value] of CORS_ANSWER_HEADERS) res.writeHeader(name, value);
    }
    if ((flags & (FLUSH_NOW | CLOSE)) === 0) res.writeHeader('keep-alive', this.#keepAlive);
    if ((flags & FLUSH_NOW) !== 0) {
      res.end(json + FLUSH_PADDING, true);
    } else if ((flags & CLOSE) !== 0) {
      // Not end(json, true): uWS would close at once, and a client still sending its body would
      // get a reset instead of this answer. Nor end(json): uWS.js forbids touching an ended
      // response, so it could not be closed later. The answer goes out now (chunked); the caller
      // discards the rest of the body, then ends it (see read-body.ts).
      res.writeHeader('connection', 'close').write(json);
    } else {
      const [ok, done] = res.tryEnd(json, Buffer.byteLength(json));
      if (!ok && !done) res.close();
    }
  }

  /** A status with no body (204 preflight) or a body of another type (/metrics). */
  sendRaw(res: HttpResponse, status: Status, headers: readonly [string, string][], body = ''): void {
    this.counts.requests[status]++;
    res.writeStatus(STATUS_LINES[status]).writeHeader('keep-alive', this.#keepAlive);
    for (const [name, value] of headers) res.writeHeader(name, value);
    res.end(body);
  }
}
