// A worker thread of the HTTP front (WORKERS > 1, see workers.ts): the same routes as the
// single-thread server, reading, gunzipping and validating bodies here, with an intake that hands
// each parsed request to the main thread, the one owner of the channel, and answers the client
// once the main thread says what became of it.
import { parentPort, workerData } from 'node:worker_threads';
import type { Refusal, Reply } from '../acks.js';
import type { Entry } from '../channel.js';
import { createLogger } from '../log.js';
import { sharedHttpCounts } from '../metrics/http.js';
import type { Intake } from '../pipeline.js';
import { IngestServer, type MetricsPage } from './server.js';
import { type FromWorker, type PushItem, readAdmits, type ToWorker, type WorkerSetup } from './workers.js';

class RemoteIntake implements Intake {
  #next = 0;
  readonly #waiting = new Map<number, (reply: Reply) => void>();
  #items: PushItem[] = [];
  #transfer: ArrayBuffer[] = [];

  /** `state`: what the main thread publishes of its intake (WorkerSetup.state). */
  constructor(
    private readonly state: Float64Array,
    private readonly post: (message: FromWorker, transfer?: ArrayBuffer[]) => void,
  ) {}

  /** A hint, refreshed by the main thread: its own accept has the last word. */
  admits(): 'ok' | Refusal {
    return readAdmits(this.state);
  }

  get events(): number {
    return this.state[1]!;
  }

  get bytes(): number {
    return this.state[2]!;
  }

  /**
   * Queued, and sent with the others of this turn of the event loop: one message, not one per
   * request. The route hands this turn's requests over together, at its end (answersLater): a
   * microtask after them sends them all, without waiting for another turn.
   */
  accept(entry: Entry, answer: (reply: Reply) => void): Reply | 'pending' {
    const { body } = entry;
    const id = this.#next++;
    this.#waiting.set(id, answer);
    // parseEvents holds the events in a buffer of their own: handed over, not copied. Otherwise a
    // copy in memory of its own (a slice of Node's shared pool cannot be transferred).
    const own = body.byteOffset === 0 && body.byteLength === body.buffer.byteLength;
    const buffer = (own ? body.buffer : body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength)) as ArrayBuffer;
    this.#items.push({ id, body: buffer, spans: entry.spans, receivedAt: entry.receivedAt, idem: entry.idem });
    this.#transfer.push(buffer);
    if (this.#items.length === 1) queueMicrotask(this.#flush);
    return 'pending';
  }

  answer(ids: readonly number[], outcomes: readonly Reply[]): void {
    for (let i = 0; i < ids.length; i++) {
      const answer = this.#waiting.get(ids[i]!)!;
      this.#waiting.delete(ids[i]!);
      answer(outcomes[i]!);
    }
  }

  #flush = (): void => {
    const items = this.#items;
    const transfer = this.#transfer;
    this.#items = [];
    this.#transfer = [];
    try {
      this.post({ type: 'push', items }, transfer);
    } catch (err) {
      // Nothing reached the main thread: these requests are refused, not left waiting.
      log.error({ err, requests: items.length }, 'handing requests to the main thread failed');
      this.answer(
        items.map((item) => item.id),
        items.map(() => 'not_stored'),
      );
    }
  };
}

const setup = workerData as WorkerSetup;
const port = parentPort!;
const post = (message: FromWorker, transfer?: ArrayBuffer[]): void => port.postMessage(message, transfer);
const log = createLogger(1, { level: setup.logLevel, base: { instance: setup.instanceId, part: 'http', worker: setup.index } });
const counts = sharedHttpCounts(setup.counts);
const intake = new RemoteIntake(new Float64Array(setup.state), post);
let nextPage = 0;
const pages = new Map<number, { resolve: (page: MetricsPage) => void; reject: (err: Error) => void }>();
const renderMetrics = (): Promise<MetricsPage> =>
  new Promise((resolve, reject) => {
    const id = nextPage++;
    pages.set(id, { resolve, reject });
    post({ type: 'metrics', id });
  });
const server = new IngestServer(setup.options, intake, counts, renderMetrics, log, setup.metricsOnIngestPort ? 'ingest port' : 'elsewhere');
// Ready from the start: a connection reaches a worker only once the main thread listens, and the
// main thread marks itself ready before its event loop accepts one.
server.markReady();

port.on('message', (message: ToWorker) => {
  switch (message.type) {
    case 'answers':
      return intake.answer(message.ids, message.outcomes);
    case 'metrics': {
      const page = pages.get(message.id)!;
      pages.delete(message.id);
      return message.page === undefined ? page.reject(new Error(message.error)) : page.resolve(message.page);
    }
    case 'unready':
      return server.unready(message.reason);
    case 'shutdown':
      return server.beginShutdown();
    case 'close':
      // Every answer the main thread sent came before this message, and is written. Connections
      // still open must be closed before the thread ends (Node aborts the process if a thread
      // ends with open handles); then nothing holds the thread.
      server.closeConnections();
      return port.close();
  }
});
// A bug here must not take the process with it: a thread that ends with connections open makes
// Node abort the whole process, losing the events the main thread holds. So: the main thread logs
// it and shuts down in order (exit 1), as for a crash of its own, and hands no new connection
// here; this thread refuses new requests (503 shutting_down) but keeps its connections, so that
// the requests it handed over, whose events are stored, still get their answers. It closes them,
// and ends, on the main thread's 'close', once every answer is sent.
let crashed = false;
const crash = (err: unknown): void => {
  if (crashed) return;
  crashed = true;
  post({ type: 'crashed', error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  server.beginShutdown();
};
process.on('uncaughtException', crash);
process.on('unhandledRejection', crash);
post({ type: 'ready', descriptor: server.descriptor() });
