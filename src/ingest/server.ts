// uWebSockets.js routes: POST /v1/events into the channel, health, readiness and metrics (SPEC §2).
//
// A uWS response must not be touched after its onAborted ran; every body is therefore handled
// synchronously inside the last onData call, and only /metrics answers later (guarded).
import type { HttpRequest, HttpResponse, TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import type { Logger } from 'pino';
import type { Channel } from '../channel.js';
import type { HttpCounts, Status } from '../metrics/http.js';
import { LINE_OVERHEAD_BYTES } from '../upload/batcher.js';
import { BODY_TOO_LARGE, type BodyFormat, gunzipCapped, parseEvents, Rejection } from './body.js';
import { uWS, uwsLoadError } from './uws.js';

/** A JS emulation of the addon (older uWebSockets.js forks had one) is not native code; main stops first if none loaded. */
export const httpEngine: 'native' | 'js-fallback' = uwsLoadError === undefined && String(uWS.App).includes('[native code]') ? 'native' : 'js-fallback';

export interface IngestOptions {
  readonly maxBodyBytes: number;
  readonly maxEventsPerRequest: number;
  readonly apiKeys: readonly string[];
  readonly corsOrigins: readonly string[];
}

export interface MetricsPage {
  readonly contentType: string;
  readonly body: string;
}

const JSON_TYPE = 'application/json';
const QUEUE_FULL_LOG_INTERVAL_MS = 10_000;
const STATUS_LINES: Record<Status, string> = {
  '200': '200 OK', '202': '202 Accepted', '204': '204 No Content', '400': '400 Bad Request',
  '401': '401 Unauthorized', '404': '404 Not Found', '405': '405 Method Not Allowed',
  '413': '413 Payload Too Large', '415': '415 Unsupported Media Type', '500': '500 Internal Server Error',
  '503': '503 Service Unavailable',
};
const body = (error: string, message: string): string => JSON.stringify({ error, message });
const QUEUE_FULL = body('queue_full', 'the event channel is full; retry after the Retry-After delay');
const SHUTTING_DOWN = body('shutting_down', 'the server is shutting down; send to another instance');
const UNAUTHORIZED = body('unauthorized', 'send a valid API key in x-api-key, Authorization: Bearer, or ?api_key=');
const UNSUPPORTED_TYPE = body('unsupported_media_type', 'Content-Type must be application/json, application/x-ndjson or text/plain');
const UNSUPPORTED_ENCODING = body('unsupported_encoding', 'Content-Encoding must be gzip or identity');
const NOT_FOUND = body('not_found', 'no such endpoint; events go to POST /v1/events');
const METHOD_NOT_ALLOWED = body('method_not_allowed', 'method not allowed on this endpoint');

export class IngestServer {
  readonly #app: TemplatedApp;
  readonly #metricsApp: TemplatedApp | undefined;
  readonly #listenSockets: us_listen_socket[] = [];
  readonly #apiKeys: ReadonlySet<string> | undefined;
  readonly #anyOrigin: boolean;
  readonly #origins: ReadonlySet<string> | undefined;
  #ready = false;
  #shuttingDown = false;
  #queueFullUnlogged = 0;
  #queueFullLoggedAt = 0;

  constructor(
    private readonly options: IngestOptions,
    private readonly channel: Channel,
    private readonly counts: HttpCounts,
    private readonly renderMetrics: () => Promise<MetricsPage>,
    private readonly log: Logger,
    separateMetricsPort: boolean,
  ) {
    this.#apiKeys = options.apiKeys.length > 0 ? new Set(options.apiKeys) : undefined;
    this.#anyOrigin = options.corsOrigins.includes('*');
    this.#origins = options.corsOrigins.length > 0 ? new Set(options.corsOrigins) : undefined;
    const app = (this.#app = uWS.App());
    app.post('/v1/events', this.#postEvents);
    if (this.#origins !== undefined) app.options('/v1/events', this.#preflight);
    app.any('/v1/events', (res) => this.#send(res, '405', METHOD_NOT_ALLOWED, '', 'POST'));
    this.#routeGet(app, '/healthz', (res) => this.#send(res, '200', '{"status":"ok"}', ''));
    this.#routeGet(app, '/readyz', (res) =>
      this.#ready && !this.#shuttingDown
        ? this.#send(res, '200', '{"status":"ready"}', '')
        : this.#send(res, '503', this.#shuttingDown ? SHUTTING_DOWN : body('starting', 'not ready yet'), ''),
    );
    this.#metricsApp = separateMetricsPort ? uWS.App() : undefined;
    this.#routeGet(this.#metricsApp ?? app, '/metrics', this.#serveMetrics);
    app.any('/*', (res) => this.#send(res, '404', NOT_FOUND, ''));
    this.#metricsApp?.any('/*', (res) => this.#send(res, '404', NOT_FOUND, ''));
  }

  /** Listens on the ingest port, and the metrics port if separate; resolves with the bound ports. */
  async listen(host: string, port: number, metricsPort?: number): Promise<{ port: number; metricsPort: number }> {
    const bound = await this.#listenOn(this.#app, host, port);
    const boundMetrics = this.#metricsApp === undefined ? bound : await this.#listenOn(this.#metricsApp, host, metricsPort ?? 0);
    return { port: bound, metricsPort: boundMetrics };
  }

  /** /readyz answers 200 from now on. */
  markReady(): void {
    this.#ready = true;
  }

  /** /readyz and POST /v1/events answer 503 shutting_down from now on. */
  beginShutdown(): void {
    this.#shuttingDown = true;
  }

  /** Stops listening; idempotent. */
  close(): void {
    for (const socket of this.#listenSockets.splice(0)) uWS.us_listen_socket_close(socket);
  }

  #listenOn(app: TemplatedApp, host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      app.listen(host, port, (socket) => {
        if (socket === false) return reject(new Error(`cannot listen on ${host}:${port} (in use, or not allowed)`));
        this.#listenSockets.push(socket);
        resolve(uWS.us_socket_local_port(socket));
      });
    });
  }

  #routeGet(app: TemplatedApp, path: string, handler: (res: HttpResponse, req: HttpRequest) => void): void {
    app.get(path, handler);
    app.any(path, (res) => this.#send(res, '405', METHOD_NOT_ALLOWED, '', 'GET'));
  }

  #postEvents = (res: HttpResponse, req: HttpRequest): void => {
    // Headers must be read now: req is only valid until this function returns.
    const origin = this.#origins === undefined ? '' : req.getHeader('origin');
    const contentLength = req.getHeader('content-length');
    const hasBody = contentLength !== '0';
    if (this.#shuttingDown) return this.#send(res, '503', SHUTTING_DOWN, origin, undefined, hasBody);
    if (this.#apiKeys !== undefined && !this.#authorized(req)) return this.#send(res, '401', UNAUTHORIZED, origin, undefined, hasBody);
    const format = bodyFormat(req.getHeader('content-type'));
    if (format === undefined) return this.#send(res, '415', UNSUPPORTED_TYPE, origin, undefined, hasBody);
    const encoding = req.getHeader('content-encoding').toLowerCase();
    const gzip = encoding === 'gzip';
    if (!gzip && encoding !== '' && encoding !== 'identity') return this.#send(res, '415', UNSUPPORTED_ENCODING, origin, undefined, hasBody);
    if (Number(contentLength) > this.options.maxBodyBytes) return this.#tooLarge(res, BODY_TOO_LARGE, origin);

    let parts: Buffer[] | undefined;
    let received = 0;
    let done = false;
    res.onAborted(() => {
      done = true;
    });
    res.onData((chunk, isLast) => {
      if (done) return;
      received += chunk.byteLength;
      if (received > this.options.maxBodyBytes) {
        done = true;
        parts = undefined;
        res.cork(() => this.#tooLarge(res, BODY_TOO_LARGE, origin));
        return;
      }
      if (!isLast) {
        // uWS reuses the chunk's memory after this callback returns: keep a copy.
        (parts ??= []).push(Buffer.from(chunk.slice(0)));
        return;
      }
      done = true;
      // A view of uWS's memory, valid only in this callback: events stay in the body, as byte spans,
      // until their batch is written, so the body must become ours. Concatenating and gunzipping
      // both make a new buffer; only a plain body in one chunk needs a copy of its own.
      const last = Buffer.from(chunk);
      const body = parts !== undefined ? Buffer.concat([...parts, last]) : gzip ? last : Buffer.from(last);
      // Outside the handler's own tick uWS does not cork: without this, status line, headers and
      // body each cost a send() system call.
      res.cork(() => this.#accept(res, body, format, gzip, origin));
    });
  };

  #accept(res: HttpResponse, wire: Buffer, format: BodyFormat, gzip: boolean, origin: string): void {
    // Under overload most requests meet a full channel: refuse them before paying for a parse.
    const admitted = this.channel.admits();
    if (admitted !== 'ok') return this.#refuse(res, admitted, origin);
    const raw = gzip ? gunzipCapped(wire, this.options.maxBodyBytes) : wire;
    if (raw instanceof Rejection) return raw.status === 413 ? this.#tooLarge(res, raw, origin) : this.#reject(res, raw, origin);
    const parsed = parseEvents(raw, format, this.options.maxEventsPerRequest);
    if (parsed instanceof Rejection) return this.#reject(res, parsed, origin);
    const count = parsed.spans.length / 2;
    const pushed = this.channel.tryPush({
      receivedAt: Date.now(),
      body: parsed.body,
      spans: parsed.spans,
      count,
      bytes: parsed.bytes + count * LINE_OVERHEAD_BYTES,
    });
    if (pushed !== 'ok') return this.#refuse(res, pushed, origin);
    this.counts.eventsAccepted += count;
    this.#send(res, '202', `{"accepted":${count}}`, origin);
  }

  /** 503: the channel is closed (shutdown) or full (back-pressure: retry after a second). */
  #refuse(res: HttpResponse, why: 'full' | 'closed', origin: string): void {
    if (why === 'closed') return this.#send(res, '503', SHUTTING_DOWN, origin);
    this.counts.rejectedQueueFull++;
    this.#logQueueFull();
    this.#send(res, '503', QUEUE_FULL, origin, undefined, false, true);
  }

  #reject(res: HttpResponse, rejection: Rejection, origin: string): void {
    this.#send(res, String(rejection.status) as Status, JSON.stringify(rejection), origin);
  }

  /** 413 closes the connection: the rest of the body is never read. */
  #tooLarge(res: HttpResponse, rejection: Rejection, origin: string): void {
    this.counts.rejectedBodyTooLarge++;
    this.#send(res, '413', JSON.stringify(rejection), origin, undefined, true);
  }

  // Rate-limited: under overload this would otherwise be one line per request.
  #logQueueFull(): void {
    this.#queueFullUnlogged++;
    const now = Date.now();
    if (now - this.#queueFullLoggedAt < QUEUE_FULL_LOG_INTERVAL_MS) return;
    this.log.warn({ rejected: this.#queueFullUnlogged, channelEvents: this.channel.events, channelBytes: this.channel.bytes }, 'queue full (drop)');
    this.#queueFullLoggedAt = now;
    this.#queueFullUnlogged = 0;
  }

  #authorized(req: HttpRequest): boolean {
    const keys = this.#apiKeys!;
    const bearer = req.getHeader('authorization');
    return (
      keys.has(req.getHeader('x-api-key')) ||
      (bearer.startsWith('Bearer ') && keys.has(bearer.slice(7).trim())) ||
      // navigator.sendBeacon cannot set headers.
      keys.has(req.getQuery('api_key') ?? '')
    );
  }

  #preflight = (res: HttpResponse, req: HttpRequest): void => {
    const origin = req.getHeader('origin');
    res.writeStatus(STATUS_LINES['204']);
    if (this.#corsAllows(origin)) {
      res
        .writeHeader('access-control-allow-origin', origin)
        .writeHeader('vary', 'origin')
        .writeHeader('access-control-allow-methods', 'POST, OPTIONS')
        .writeHeader('access-control-allow-headers', 'content-type, content-encoding, authorization, x-api-key')
        .writeHeader('access-control-max-age', '86400');
    }
    this.counts.requests['204']++;
    res.end();
  };

  #corsAllows(origin: string): boolean {
    return origin !== '' && (this.#anyOrigin || this.#origins!.has(origin));
  }

  #serveMetrics = (res: HttpResponse): void => {
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    this.renderMetrics().then(
      (page) => {
        if (aborted) return;
        res.cork(() => {
          this.counts.requests['200']++;
          res.writeStatus(STATUS_LINES['200']).writeHeader('content-type', page.contentType).end(page.body);
        });
      },
      (err: Error) => {
        this.log.error({ err: err.message }, 'rendering /metrics failed');
        if (aborted) return;
        this.counts.requests['500']++;
        res.cork(() => res.writeStatus(STATUS_LINES['500']).end());
      },
    );
  };

  #send(res: HttpResponse, status: Status, json: string, origin: string, allow?: string, close = false, retryAfter = false): void {
    this.counts.requests[status]++;
    res.writeStatus(STATUS_LINES[status]).writeHeader('content-type', JSON_TYPE);
    if (allow !== undefined) res.writeHeader('allow', allow);
    if (retryAfter) res.writeHeader('retry-after', '1');
    if (origin !== '' && this.#corsAllows(origin)) res.writeHeader('access-control-allow-origin', origin).writeHeader('vary', 'origin');
    res.end(json, close);
  }
}

function bodyFormat(contentType: string): BodyFormat | undefined {
  const semicolon = contentType.indexOf(';');
  const type = (semicolon === -1 ? contentType : contentType.slice(0, semicolon)).trim().toLowerCase();
  if (type === 'application/json' || type === 'text/plain') return 'json';
  if (type === 'application/x-ndjson') return 'ndjson';
  return undefined;
}
