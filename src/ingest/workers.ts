// WORKERS > 1: the HTTP front on N worker threads (worker.ts), the pipeline on the main thread.
//
// The main thread's server listens (exclusively, as with one thread) and uWS hands each accepted
// connection to the workers' apps in turn; the main app serves none while it has a child. A
// worker reads, gunzips and validates a request, then sends its events here; the main thread,
// the one owner of the channel, the WAL and the metrics registry, pushes them and sends back
// what became of them; only then does the worker answer the client. So every 202 a worker sends
// is for events already in the channel (or the WAL, or S3, per ACK_LEVEL), and the shutdown's
// drain keeps them as with one thread.
//
// Messages go at most once per turn of the event loop each way, whatever the number of requests.
// The workers' HTTP counters live in shared memory the main thread sums at each scrape.
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { isReceipt, type Refusal, type Reply } from '../acks.js';
import type { Entry, IdemKey } from '../channel.js';
import type { Config, LogLevel } from '../config.js';
import { SHARED_COUNTS_BYTES, sharedHttpCounts, type HttpCounts } from '../metrics/http.js';
import type { Intake } from '../pipeline.js';
import { connectionCap } from './connections.js';
import type { IngestOptions, IngestServer, MetricsPage, Unready } from './server.js';

/** What a worker thread starts with (its workerData). */
export interface WorkerSetup {
  readonly index: number;
  /** Its share of the per-server limits. */
  readonly options: IngestOptions;
  readonly metricsOnIngestPort: boolean;
  readonly logLevel: LogLevel;
  readonly instanceId: string;
  /** Its HttpCounts (sharedHttpCounts). */
  readonly counts: SharedArrayBuffer;
  /** What the main thread publishes of its intake: [admits() as an index of ADMITS, events, bytes]. */
  readonly state: SharedArrayBuffer;
}

/** One parsed request: `body` is handed over (transferred), event i is body[spans[2i], spans[2i + 1]). */
export interface PushItem {
  readonly id: number;
  readonly body: ArrayBuffer;
  readonly spans: readonly number[];
  readonly receivedAt: number;
  /** Its Idempotency-Key, whose table is here on the main thread (src/idempotency.ts). */
  readonly idem: IdemKey | undefined;
}

export type FromWorker = { type: 'ready'; descriptor: unknown } | { type: 'push'; items: PushItem[] } | { type: 'metrics'; id: number } | { type: 'crashed'; error: string };

export type ToWorker =
  | { type: 'answers'; ids: number[]; outcomes: Reply[] }
  | { type: 'metrics'; id: number; page?: MetricsPage; error?: string }
  | { type: 'unready'; reason: Unready | undefined }
  | { type: 'shutdown' | 'close' };

const ADMITS: readonly ('ok' | Refusal)[] = ['ok', 'full', 'closed', 'not_stored', 'dlq_full'];

export const readAdmits = (state: Float64Array): 'ok' | Refusal => ADMITS[state[0]!]!;

/** The channel also empties between pushes: its state is published this often as well as after each push. */
const PUBLISH_MS = 10;

interface Child {
  readonly worker: Worker;
  /** Resolves when the thread has ended. */
  readonly exited: Promise<unknown>;
  descriptor: unknown;
  /** Crashed: no new connection reaches it; it still sends the answers it is owed. */
  lost: boolean;
  /** The thread has ended: its connections with it. */
  ended: boolean;
  /** Its HttpCounts (answers lost are counted here, by this thread alone). */
  readonly counts: HttpCounts;
  /** Told to close (no connection reaches it any more). */
  closing: boolean;
  /** Answers not yet sent: sent together at the end of this turn of the event loop. */
  ids: number[];
  outcomes: Reply[];
}

export interface WorkersPlan {
  /** The server's settings: the workers' share of its limits, their logging, where /metrics is. */
  readonly config: Config;
  /** The main thread's server: it listens and hands connections to the workers. */
  readonly server: IngestServer;
  readonly intake: Intake;
  readonly renderMetrics: () => Promise<MetricsPage>;
  readonly log: Logger;
  /** A worker ended other than by close(): a bug. */
  readonly crashed: () => void;
}

export class IngestWorkers {
  readonly #children: Child[] = [];
  readonly #state = new Float64Array(new SharedArrayBuffer(3 * Float64Array.BYTES_PER_ELEMENT));
  readonly #publisher: NodeJS.Timeout;
  #shuttingDown = false;
  #closing = false;

  /** The HttpCounts of each worker, for createHttpMetrics. */
  static sharedCounts(count: number): { memory: SharedArrayBuffer[]; counts: HttpCounts[] } {
    const memory = Array.from({ length: count }, () => new SharedArrayBuffer(SHARED_COUNTS_BYTES));
    return { memory, counts: memory.map(sharedHttpCounts) };
  }

  /**
   * Starts the workers with `counts` (sharedCounts's memory), resolving once each has given its
   * app to the server; rejects if one fails to start (the caller then exits). MAX_CONNECTIONS and
   * MAX_BODIES_IN_FLIGHT_BYTES are per server: each worker gets its share.
   */
  static async start(plan: WorkersPlan, counts: readonly SharedArrayBuffer[]): Promise<IngestWorkers> {
    const workers = new IngestWorkers(plan);
    const { config } = plan;
    const share = counts.length;
    const bodiesShare = Math.max(1, Math.floor(config.maxBodiesInFlightBytes / share));
    // A worker's bodies awaiting their answer (a busy main thread, ACK_LEVEL=disk or s3) are bounded
    // by the same share, apart from those being read, so that each refusal says its own cause.
    const options: IngestOptions = {
      ...config,
      maxConnections: Math.max(1, Math.floor(connectionCap(config.maxConnections) / share)),
      maxBodiesInFlightBytes: bodiesShare,
      answersLater: true,
      maxBodiesAwaitingBytes: bodiesShare,
    };
    const metricsOnIngestPort = config.metricsPort === undefined;
    await Promise.all(
      counts.map((memory, index) => {
        const setup: WorkerSetup = { index, options, metricsOnIngestPort, logLevel: config.logLevel, instanceId: config.instanceId, counts: memory, state: workers.#state.buffer as SharedArrayBuffer };
        return workers.#spawn(setup);
      }),
    );
    return workers;
  }

  private constructor(private readonly plan: WorkersPlan) {
    this.#publish();
    this.#publisher = setInterval(this.#publish, PUBLISH_MS).unref();
  }

  /**
   * Every worker answers 503 shutting_down from now on: at once through the shared state (a
   * message could be read after a request), and before reading bodies once the message is read.
   */
  beginShutdown(): void {
    this.#shuttingDown = true;
    this.#publish();
    this.#tell({ type: 'shutdown' });
  }

  /** Every worker's /readyz says `reason` from now on (IngestServer.unready), or no longer. */
  unready(reason: Unready | undefined): void {
    this.#tell({ type: 'unready', reason });
  }

  /**
   * After the pipeline closed: the workers send the answers they are owed, close their
   * connections and end. True once every thread has ended, false if one has not within `withinMs`
   * (the process must not then exit normally: Node aborts on a thread that ends with open
   * connections). Again, later, it only waits.
   */
  async close(withinMs = Infinity): Promise<boolean> {
    this.#closing = true;
    clearInterval(this.#publisher);
    for (const child of this.#children) this.#tellToClose(child);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => {
      if (withinMs !== Infinity) timer = setTimeout(() => resolve(false), withinMs);
    });
    const ended = await Promise.race([Promise.all(this.#children.map((child) => child.exited)).then(() => true), timedOut]);
    clearTimeout(timer);
    return ended;
  }

  /** No new connection reaches it; it is sent the answers it is owed, then told to close. */
  #tellToClose(child: Child): void {
    if (child.closing) return;
    child.closing = true;
    if (child.descriptor !== undefined) this.plan.server.removeChild(child.descriptor);
    this.#flush(child);
    child.worker.postMessage({ type: 'close' } satisfies ToWorker);
  }

  #spawn(setup: WorkerSetup): Promise<void> {
    return new Promise((resolve, reject) => {
      const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: setup });
      const child: Child = { worker, exited: new Promise((ended) => worker.once('exit', ended)), descriptor: undefined, lost: false, ended: false, counts: sharedHttpCounts(setup.counts), closing: false, ids: [], outcomes: [] };
      this.#children.push(child);
      worker.on('message', (message: FromWorker) => {
        if (message.type === 'push') {
          for (const item of message.items) this.#push(child, item);
          this.#publish();
        } else if (message.type === 'metrics') {
          this.plan.renderMetrics().then(
            (page) => worker.postMessage({ type: 'metrics', id: message.id, page } satisfies ToWorker),
            (err: Error) => worker.postMessage({ type: 'metrics', id: message.id, error: err.message } satisfies ToWorker),
          );
        } else if (message.type === 'crashed') {
          this.#lost(child, setup.index, message.error);
        } else {
          child.descriptor = message.descriptor;
          this.plan.server.addChild(message.descriptor);
          resolve();
        }
      });
      // Before it has given its app, a worker that fails makes start() fail; after, it is lost.
      worker.on('error', (err) => {
        if (child.descriptor === undefined) return reject(new Error(`worker thread ${setup.index} did not start: ${err.message}`));
        this.#lost(child, setup.index, err.stack ?? err.message);
      });
      worker.on('exit', (code) => {
        child.ended = true;
        this.#answersLost(child, setup.index);
        if (child.descriptor === undefined) return reject(new Error(`worker thread ${setup.index} exited with code ${code} before it started`));
        this.#lost(child, setup.index, `exited with code ${code}`);
      });
    });
  }

  /**
   * A worker crashed or ended by itself: no new connection may reach it, and the process shuts
   * down. A crashed worker still runs: it keeps its connections and is sent the answers it is owed
   * (events the pipeline holds) as they come, until close() (after the pipeline's drain).
   */
  #lost(child: Child, index: number, err: string): void {
    if (child.lost || this.#closing) return;
    if (child.descriptor !== undefined) this.plan.server.removeChild(child.descriptor);
    child.descriptor = undefined;
    child.lost = true;
    // Every event it answered 202 for is in the channel; only its unanswered clients are cut off.
    this.plan.log.fatal({ worker: index, err }, 'worker thread crashed: shutting down');
    this.plan.crashed();
  }

  #push(child: Child, item: PushItem): void {
    const body = Buffer.from(item.body);
    const entry: Entry = { receivedAt: item.receivedAt, body, spans: item.spans, count: item.spans.length / 2, bytes: body.length, idem: item.idem };
    const answer = (outcome: Reply): void => {
      child.ids.push(item.id);
      child.outcomes.push(outcome);
      if (child.ids.length === 1) setImmediate(() => this.#flush(child));
    };
    const outcome = this.plan.intake.accept(entry, answer);
    if (outcome !== 'pending') answer(outcome);
  }

  #flush(child: Child): void {
    if (child.ids.length === 0) return;
    if (child.ended) return this.#answersLost(child, this.#children.indexOf(child));
    child.worker.postMessage({ type: 'answers', ids: child.ids, outcomes: child.outcomes } satisfies ToWorker);
    child.ids = [];
    child.outcomes = [];
  }

  /**
   * Answers for a thread that has ended (its connections closed with it): the requests whose events
   * were stored are counted (http_answers_lost_total{reason="worker_crashed"}) and logged.
   */
  #answersLost(child: Child, index: number): void {
    const lost = child.outcomes.filter(isReceipt).length;
    child.ids = [];
    child.outcomes = [];
    if (lost === 0) return;
    child.counts.answersLostWorkerCrashed += lost;
    this.plan.log.error({ worker: index, lost }, 'answers lost: the worker thread holding their connections ended');
  }

  #tell(message: ToWorker): void {
    for (const child of this.#children) if (!child.lost) child.worker.postMessage(message);
  }

  #publish = (): void => {
    const intake = this.plan.intake;
    this.#state[0] = ADMITS.indexOf(this.#shuttingDown ? 'closed' : intake.admits());
    this.#state[1] = intake.events;
    this.#state[2] = intake.bytes;
  };
}
