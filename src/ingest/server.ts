// uWebSockets.js routes: POST /v1/events into the channel, health, readiness and metrics (SPEC §2).
//
// A uWS response must not be touched after its onAborted ran; every body is therefore handled
// synchronously inside the last onData call, and only /metrics answers later (guarded).
import uWS, { type HttpRequest, type HttpResponse, type TemplatedApp, type us_listen_socket } from 'uWebSockets.js';
import type { Logger } from 'pino';
import type { Channel } from '../channel.js';
import type { HttpCounts } from '../metrics/http.js';
import { Access } from './access.js';
import { BODY_TOO_LARGE, type BodyFormat, gunzipCapped, type ParseLimits, parseEvents, Rejection } from './body.js';
import { ConnectionCap, fdCap } from './connections.js';
import { bodyFormat, contentLength } from './headers.js';
import { BodyBudget, type BodyHandler, type BodyLimits, BodyReader, discardBody } from './read-body.js';
import * as R from './respond.js';

/** The JS emulation the package falls back to says so only on the console; its App is not native code. */
export const httpEngine: 'native' | 'js-fallback' = String(uWS.App).includes('[native code]') ? 'native' : 'js-fallback';

export interface IngestOptions {
  readonly maxBodyBytes: number;
  readonly maxEventsPerRequest: number;
  readonly maxEventDepth: number;
  readonly maxBodiesInFlightBytes: number;
  /** Undefined: sized to the fd limit. */
  readonly maxConnections: number | undefined;
  readonly apiKeys: readonly string[];
  readonly corsOrigins: readonly string[];
}

export interface MetricsPage {
  readonly contentType: string;
  readonly body: string;
}

/** What a request carries from its headers to its body. */
interface PostContext {
  readonly format: BodyFormat;
  readonly gzip: boolean;
  readonly corsOrigin: string;
}

const QUEUE_FULL_LOG_INTERVAL_MS = 10_000;
/** After an early answer, read and drop up to this many times MAX_BODY_BYTES of body, for up to this long. */
const DISCARD_BODIES = 8;
const DISCARD_MAX_MS = 5000;

export class IngestServer implements BodyHandler<PostContext> {
  readonly #app: TemplatedApp;
  readonly #metricsApp: TemplatedApp | undefined;
  readonly #listenSockets: us_listen_socket[] = [];
  readonly #access: Access;
  readonly #respond: R.Responder;
  readonly #budget: BodyBudget;
  readonly #bodyLimits: BodyLimits;
  readonly #parseLimits: ParseLimits;
  #cap: ConnectionCap | undefined;
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
    this.#access = new Access(options.apiKeys, options.corsOrigins);
    this.#respond = new R.Responder(counts);
    this.#budget = new BodyBudget(options.maxBodiesInFlightBytes);
    this.#bodyLimits = { maxBodyBytes: options.maxBodyBytes, discardMaxBytes: DISCARD_BODIES * options.maxBodyBytes, discardMaxMs: DISCARD_MAX_MS };
    this.#parseLimits = { maxEvents: options.maxEventsPerRequest, maxDepth: options.maxEventDepth };
    const send = this.#respond.send.bind(this.#respond);
    const app = (this.#app = uWS.App());
    app.post('/v1/events', this.#postEvents);
    if (this.#access.cors) app.options('/v1/events', (res, req) => this.#access.preflight(res, req, this.#respond));
    app.any('/v1/events', (res) => send(res, '405', R.METHOD_NOT_ALLOWED, '', 0, 'POST'));
    this.#routeGet(app, '/healthz', (res) => send(res, '200', '{"status":"ok"}'));
    this.#routeGet(app, '/readyz', (res) =>
      this.#ready && !this.#shuttingDown
        ? send(res, '200', '{"status":"ready"}')
        : send(res, '503', this.#shuttingDown ? R.SHUTTING_DOWN : R.errorBody('starting', 'not ready yet')),
    );
    this.#metricsApp = separateMetricsPort ? uWS.App() : undefined;
    this.#routeGet(this.#metricsApp ?? app, '/metrics', this.#serveMetrics);
    app.any('/*', (res) => send(res, '404', R.NOT_FOUND));
    this.#metricsApp?.any('/*', (res) => send(res, '404', R.NOT_FOUND));
  }

  /** Listens on the ingest port, and the metrics port if separate; resolves with the bound ports. */
  async listen(host: string, port: number, metricsPort?: number): Promise<{ port: number; metricsPort: number }> {
    const bound = await this.#listenOn(this.#app, host, port);
    const boundMetrics = this.#metricsApp === undefined ? bound : await this.#listenOn(this.#metricsApp, host, metricsPort ?? 0);
    const cap = fdCap(this.options.maxConnections);
    if (cap !== undefined) {
      // The ingest listener is always the first socket listened on.
      const listener = {
        pause: () => uWS.us_listen_socket_close(this.#listenSockets.shift()!),
        resume: () => this.#listenOn(this.#app, host, bound).then(() => true, () => false),
      };
      this.#cap = new ConnectionCap(cap, listener, this.log);
      this.#cap.start();
    }
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
    this.#cap?.stop();
    for (const socket of this.#listenSockets.splice(0)) uWS.us_listen_socket_close(socket);
  }

  #listenOn(app: TemplatedApp, host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      app.listen(host, port, (socket) => {
        if (socket === false) return reject(new Error(`cannot listen on ${host}:${port} (in use, or not allowed)`));
        // The ingest listener stays first, even when taken again after a pause.
        if (app === this.#app) this.#listenSockets.unshift(socket);
        else this.#listenSockets.push(socket);
        resolve(uWS.us_socket_local_port(socket));
      });
    });
  }

  #routeGet(app: TemplatedApp, path: string, handler: (res: HttpResponse, req: HttpRequest) => void): void {
    app.get(path, handler);
    app.any(path, (res) => this.#respond.send(res, '405', R.METHOD_NOT_ALLOWED, '', 0, 'GET'));
  }

  #postEvents = (res: HttpResponse, req: HttpRequest): void => {
    // Headers must be read now: req is only valid until this function returns.
    const lengthHeader = req.getHeader('content-length');
    const declared = lengthHeader === '' ? (req.getHeader('transfer-encoding') === '' ? 0 : -1) : contentLength(req, lengthHeader);
    if (Number.isNaN(declared)) return this.#respond.send(res, '400', R.INVALID_LENGTH, '', R.FLUSH_NOW);
    const origin = this.#access.cors ? req.getHeader('origin') : '';
    const corsOrigin = this.#access.corsOrigin(origin);
    if (declared > this.options.maxBodyBytes) {
      this.counts.rejectedBodyTooLarge++;
      // uWS drops a connection with a Content-Length of 10 digits or more right after this handler.
      if (lengthHeader.length >= 10) return this.#respond.send(res, '413', JSON.stringify(BODY_TOO_LARGE), corsOrigin, R.FLUSH_NOW);
      return this.#early(res, '413', JSON.stringify(BODY_TOO_LARGE), corsOrigin, declared);
    }
    if (this.#shuttingDown) return this.#early(res, '503', R.SHUTTING_DOWN, corsOrigin, declared);
    if (this.#cap?.full === true) return this.#early(res, '503', R.BUSY, corsOrigin, declared, R.RETRY_AFTER);
    if (!this.#access.originAllowed(origin)) return this.#early(res, '403', R.ORIGIN_NOT_ALLOWED, '', declared);
    if (!this.#access.authorized(req)) return this.#early(res, '401', R.UNAUTHORIZED, corsOrigin, declared);
    const format = bodyFormat(req.getHeader('content-type'));
    if (format === undefined) return this.#early(res, '415', R.UNSUPPORTED_TYPE, corsOrigin, declared);
    const encoding = req.getHeader('content-encoding').toLowerCase();
    const gzip = encoding === 'gzip';
    if (!gzip && encoding !== '' && encoding !== 'identity') return this.#early(res, '415', R.UNSUPPORTED_ENCODING, corsOrigin, declared);
    new BodyReader(res, declared, this.#bodyLimits, this.#budget, this, { format, gzip, corsOrigin });
  };

  /** An answer before the body is read: the rest of the body is discarded (bounded), then the connection closed. */
  #early(res: HttpResponse, status: '400' | '401' | '403' | '413' | '415' | '503', json: string, corsOrigin: string, declared: number, flags = 0): void {
    if (declared === 0) return this.#respond.send(res, status, json, corsOrigin, flags);
    discardBody(res, this.#bodyLimits);
    this.#respond.send(res, status, json, corsOrigin, flags | R.CLOSE);
  }

  refuse(res: HttpResponse, why: 'too_large' | 'busy', { corsOrigin }: PostContext): void {
    if (why === 'busy') return this.#respond.send(res, '503', R.BUSY, corsOrigin, R.CLOSE | R.RETRY_AFTER);
    this.counts.rejectedBodyTooLarge++;
    this.#respond.send(res, '413', JSON.stringify(BODY_TOO_LARGE), corsOrigin, R.CLOSE);
  }

  body(res: HttpResponse, wire: Buffer, owned: boolean, { format, gzip, corsOrigin }: PostContext): void {
    // Under overload most requests meet a full channel: refuse them before paying for a parse.
    const admitted = this.channel.admits();
    if (admitted !== 'ok') return this.#refuseQueue(res, admitted, corsOrigin);
    const raw = gzip ? gunzipCapped(wire, this.options.maxBodyBytes) : wire;
    if (raw instanceof Rejection) {
      if (raw.status === 413) this.counts.rejectedBodyTooLarge++;
      return this.#respond.send(res, raw.status === 413 ? '413' : '400', JSON.stringify(raw), corsOrigin);
    }
    const parsed = parseEvents(raw, format, this.#parseLimits, gzip || owned);
    if (parsed instanceof Rejection) return this.#respond.send(res, '400', JSON.stringify(parsed), corsOrigin);
    const count = parsed.spans.length / 2;
    const pushed = this.channel.tryPush({ receivedAt: Date.now(), body: parsed.body, spans: parsed.spans, count, bytes: parsed.bytes });
    if (pushed !== 'ok') return this.#refuseQueue(res, pushed, corsOrigin);
    this.counts.eventsAccepted += count;
    this.#respond.send(res, '202', `{"accepted":${count}}`, corsOrigin);
  }

  /** 503: the channel is closed (shutdown) or full (back-pressure: retry after a second). */
  #refuseQueue(res: HttpResponse, why: 'full' | 'closed', corsOrigin: string): void {
    if (why === 'closed') return this.#respond.send(res, '503', R.SHUTTING_DOWN, corsOrigin);
    this.counts.rejectedQueueFull++;
    this.#logQueueFull();
    this.#respond.send(res, '503', R.QUEUE_FULL, corsOrigin, R.RETRY_AFTER);
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

  #serveMetrics = (res: HttpResponse): void => {
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    this.renderMetrics().then(
      (page) => {
        if (!aborted) res.cork(() => this.#respond.sendRaw(res, '200', [['content-type', page.contentType]], page.body));
      },
      (err: Error) => {
        this.log.error({ err: err.message }, 'rendering /metrics failed');
        if (!aborted) res.cork(() => this.#respond.sendRaw(res, '500', []));
      },
    );
  };
}
