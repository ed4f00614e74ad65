// uWebSockets.js routes and listeners: POST /v1/events (post-events.ts), health, readiness and
// metrics, and the connection cap (connections.ts). /metrics answers later, guarded by onAborted.
import type { HttpRequest, HttpResponse, TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import type { Logger } from 'pino';
import type { HttpCounts } from '../metrics/http.js';
import type { Intake } from '../pipeline.js';
import { Access } from './access.js';
import { ConnectionCap, connectionCap } from './connections.js';
import { type EventsOptions, EventsRoute } from './post-events.js';
import * as R from './respond.js';
import { uWS } from './uws.js';

// uWS takes (host, port, options, cb) and exports LIBUS_LISTEN_EXCLUSIVE_PORT = 1 at run time;
// its typings declare neither.
type ListenWithOptions = (host: string, port: number, options: number, cb: (socket: us_listen_socket | false) => void) => TemplatedApp;
const EXCLUSIVE_PORT = 1;
// This fork of uWS has a keep-alive timeout, undeclared in its typings: setResponseTimeout, the
// seconds a connection may stay idle after an answer (default 30). (Its setIdleTimeout is how long
// a request may take to arrive, also 30 s, left as it is.)
interface KeepAlive {
  setResponseTimeout(seconds: number): void;
}
// uWS counts idle time in ticks of 4 s and closes an idle connection at the ceil(s / 4)-th tick
// after its answer: between 4 * ceil(s / 4) - 4 and 4 * ceil(s / 4) s later, as the tick falls
// (measured: s = 8 closed after 4.9 to 8.0 s; s = 30 after up to 32 s). Given s = N + 4, it keeps
// an idle connection at least N s, which `Keep-Alive: timeout=N` may then promise, and closes it
// within N + 8 s.
const UWS_TICK_S = 4;
interface ChildApps {
  getDescriptor(): unknown;
  addChildAppDescriptor(descriptor: unknown): void;
  removeChildAppDescriptor(descriptor: unknown): void;
}

export interface IngestOptions extends EventsOptions {
  /** Undefined: sized to the fd limit. */
  readonly maxConnections: number | undefined;
  /** HTTP_IDLE_TIMEOUT_S: the least time an idle keep-alive connection is kept open. */
  readonly httpIdleTimeoutS: number;
  readonly apiKeys: readonly string[];
  readonly corsOrigins: readonly string[];
}

/**
 * Where /metrics is served: on the ingest port, on a port of its own (METRICS_PORT), or by
 * another thread (a worker thread's server when the main thread has METRICS_PORT).
 */
export type MetricsPlace = 'ingest port' | 'own port' | 'elsewhere';

/** Why the server is not ready although it runs: /readyz's 503 body. */
export interface Unready {
  readonly error: string;
  readonly message: string;
}

export interface MetricsPage {
  readonly contentType: string;
  readonly body: string;
}

export class IngestServer {
  readonly #app: TemplatedApp;
  readonly #metricsApp: TemplatedApp | undefined;
  readonly #listenSockets: us_listen_socket[] = [];
  readonly #respond: R.Responder;
  readonly #events: EventsRoute;
  #ready = false;
  /** Why /readyz answers 503 although the server runs (a configuration S3 refuses), or undefined. */
  #unready: string | undefined;
  #shuttingDown = false;
  #connectionsClosed = false;

  constructor(
    options: IngestOptions,
    intake: Intake,
    counts: HttpCounts,
    private readonly renderMetrics: () => Promise<MetricsPage>,
    private readonly log: Logger,
    metrics: MetricsPlace,
  ) {
    const access = new Access(options.apiKeys, options.corsOrigins);
    this.#respond = new R.Responder(counts, options.httpIdleTimeoutS);
    this.#events = new EventsRoute(options, { shuttingDown: () => this.#shuttingDown }, intake, counts, access, this.#respond, log);
    const send = this.#respond.send.bind(this.#respond);
    const app = (this.#app = keepIdle(uWS.App(), options.httpIdleTimeoutS));
    // Counts every connection of the ingest port, and closes those over the cap as they arrive.
    const cap = new ConnectionCap(connectionCap(options.maxConnections), counts, log);
    app.filter((res, change) => {
      const delta = Number(change);
      // A connection the main thread handed over just before this worker thread closed (uWS
      // adopts it later, on this thread's loop): closed at once, or it would keep the thread
      // alive past its end, and Node aborts a process whose thread ends with connections open.
      if (!cap.track(res, delta) && delta > 0 && this.#connectionsClosed) res.close();
    });
    app.post('/v1/events', this.#events.post);
    app.options('/v1/events', (res, req) => access.preflight(res, req, this.#respond));
    app.any('/v1/events', (res) => send(res, '405', R.METHOD_NOT_ALLOWED, '', 0, 'POST'));
    this.#routeGet(app, '/healthz', (res) => send(res, '200', '{"status":"ok"}'));
    this.#routeGet(app, '/readyz', (res) => {
      const admitted = intake.admits();
      // 'closed': a worker thread sees the main thread's shutdown there first.
      if (this.#shuttingDown || admitted === 'closed') return send(res, '503', R.SHUTTING_DOWN);
      if (!this.#ready) return send(res, '503', R.errorBody('starting', 'not ready yet'));
      // ACK_LEVEL=disk after a failed WAL write: nothing sent here can be acknowledged.
      if (admitted === 'not_stored') return send(res, '503', R.WAL_FAILED);
      // ACK_LEVEL=disk or s3: nothing more could be kept if S3 fails; ready again once the DLQ has room.
      if (admitted === 'dlq_full') return send(res, '503', R.DLQ_FULL);
      if (this.#unready !== undefined) return send(res, '503', this.#unready);
      send(res, '200', '{"status":"ready"}');
    });
    this.#metricsApp = metrics === 'own port' ? keepIdle(uWS.App(), options.httpIdleTimeoutS) : undefined;
    if (metrics !== 'elsewhere') this.#routeGet(this.#metricsApp ?? app, '/metrics', this.#serveMetrics);
    app.any('/*', (res) => send(res, '404', R.NOT_FOUND));
    this.#metricsApp?.any('/*', (res) => send(res, '404', R.NOT_FOUND));
  }

  /** Listens on the ingest port, and the metrics port if separate; resolves with the bound ports. */
  async listen(host: string, port: number, metricsPort?: number): Promise<{ port: number; metricsPort: number }> {
    const bound = await this.#listenOn(this.#app, host, port);
    const boundMetrics = this.#metricsApp === undefined ? bound : await this.#listenOn(this.#metricsApp, host, metricsPort ?? 0);
    return { port: bound, metricsPort: boundMetrics };
  }

  /**
   * WORKERS > 1: the ingest app of a worker thread, for the main thread's addChild. uWS's native
   * methods, which its typings do not declare.
   */
  descriptor(): unknown {
    return (this.#app as unknown as ChildApps).getDescriptor();
  }

  /** WORKERS > 1: from now on the ingest port hands each new connection to a child in turn; with none left, it serves them itself. */
  addChild(descriptor: unknown): void {
    (this.#app as unknown as ChildApps).addChildAppDescriptor(descriptor);
  }

  removeChild(descriptor: unknown): void {
    (this.#app as unknown as ChildApps).removeChildAppDescriptor(descriptor);
  }

  /** /readyz answers 200 from now on. */
  markReady(): void {
    this.#ready = true;
  }

  /**
   * From now on /readyz answers 503 with `reason` (its `error` and `message`) while the server is
   * otherwise ready, or, undefined, no longer. POST /v1/events is not affected.
   */
  unready(reason: Unready | undefined): void {
    this.#unready = reason && R.errorBody(reason.error, reason.message);
  }

  /** /readyz and POST /v1/events answer 503 shutting_down from now on. */
  beginShutdown(): void {
    this.#shuttingDown = true;
  }

  /** Stops listening; idempotent. */
  close(): void {
    for (const socket of this.#listenSockets.splice(0)) uWS.us_listen_socket_close(socket);
  }

  /** A worker thread's end: every connection is closed at once, so nothing keeps the thread alive. */
  closeConnections(): void {
    this.#connectionsClosed = true;
    this.#app.close();
  }

  #listenOn(app: TemplatedApp, host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      // Exclusive: without it a second server on the same port would silently share it (SO_REUSEPORT).
      (app.listen as unknown as ListenWithOptions)(host, port, EXCLUSIVE_PORT, (socket) => {
        if (socket === false) return reject(new Error(`cannot listen on ${host}:${port}: the port is in use (another server?) or not allowed`));
        this.#listenSockets.push(socket);
        resolve(uWS.us_socket_local_port(socket));
      });
    });
  }

  #routeGet(app: TemplatedApp, path: string, handler: (res: HttpResponse, req: HttpRequest) => void): void {
    app.get(path, handler);
    app.any(path, (res) => this.#respond.send(res, '405', R.METHOD_NOT_ALLOWED, '', 0, 'GET'));
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
        this.log.error({ err }, 'rendering /metrics failed');
        if (!aborted) res.cork(() => this.#respond.sendRaw(res, '500', []));
      },
    );
  };
}

function keepIdle(app: TemplatedApp, seconds: number): TemplatedApp {
  (app as unknown as KeepAlive).setResponseTimeout(seconds + UWS_TICK_S);
  return app;
}
