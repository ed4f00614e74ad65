// HTTP front metrics: requests by status, rejections the alert rules watch, engine.
// The hot path only bumps plain integers; prom-client reads them when /metrics is scraped.
import { Counter, Gauge, type Registry } from 'prom-client';

/** Every status the front answers. */
const STATUSES = ['200', '202', '204', '400', '401', '403', '404', '405', '409', '413', '415', '422', '500', '503'] as const;
export type Status = (typeof STATUSES)[number];

export class HttpCounts {
  readonly requests: Record<Status, number> = Object.fromEntries(STATUSES.map((s) => [s, 0])) as Record<Status, number>;
  rejectedQueueFull = 0;
  rejectedBodyTooLarge = 0;
  /** 503 `busy`: the bodies being read fill MAX_BODIES_IN_FLIGHT_BYTES. */
  rejectedBusy = 0;
  /** 503 `queue_full` because the DLQ is full (ACK_LEVEL=disk, s3). */
  rejectedDlqFull = 0;
  /** 503 `ack_timeout` (ACK_LEVEL=s3): not confirmed within ACK_TIMEOUT_MS. */
  ackTimeouts = 0;
  /** 503 `awaiting_answers`: a worker thread's bodies awaiting their answer fill its share of MAX_BODIES_IN_FLIGHT_BYTES. */
  rejectedAwaitingAnswers = 0;
  /** Requests whose client was gone before they were handed to the pipeline: neither stored nor answered. */
  requestsWithdrawn = 0;
  /** Requests stored whose answer could not be sent: the client was gone (reset, closed) before it. */
  answersLostClientGone = 0;
  /** Requests stored whose answer could not be sent: the worker thread holding their connections crashed. */
  answersLostWorkerCrashed = 0;
  eventsAccepted = 0;
  /** Capacity of the buffers of request bodies being read (a gauge, kept by the body budget). */
  bodiesInFlightBytes = 0;
  /** WORKERS > 1: bytes of bodies a worker thread handed over and that await their answer (a gauge). */
  bodiesAwaitingBytes = 0;
  /** Client connections open now (a gauge, kept by the connection cap). */
  connectionsOpen = 0;
  /** Connections closed as soon as accepted, for being over the connection cap. */
  connectionsRefused = 0;
}

const FIELDS = Object.keys(new HttpCounts()).filter((key) => key !== 'requests') as Exclude<keyof HttpCounts, 'requests'>[];
/** Size of the shared memory one worker thread's counts live in (sharedHttpCounts). */
export const SHARED_COUNTS_BYTES = (STATUSES.length + FIELDS.length) * Float64Array.BYTES_PER_ELEMENT;

/**
 * HttpCounts kept in shared memory: a worker thread (WORKERS > 1) bumps them, the main thread
 * reads them at each scrape. Each field has one writer, so no atomics are needed.
 */
export function sharedHttpCounts(memory: SharedArrayBuffer): HttpCounts {
  const cells = new Float64Array(memory);
  const cell = (target: object, name: string, i: number): void => {
    Object.defineProperty(target, name, { enumerable: true, get: () => cells[i], set: (value: number) => (cells[i] = value) });
  };
  const requests = {};
  STATUSES.forEach((status, i) => cell(requests, status, i));
  const counts = { requests };
  FIELDS.forEach((field, i) => cell(counts, field, STATUSES.length + i));
  return counts as HttpCounts;
}

/** Adds up one of the counts over the main thread's and every worker thread's. */
type Sum = (read: (c: HttpCounts) => number) => number;

/** The plain integers the hot path bumps, each exported as one metric, in /metrics order. */
const SUMMED: readonly { kind: 'counter' | 'gauge'; name: string; help: string; read: (c: HttpCounts) => number }[] = [
  {
    kind: 'counter',
    name: 'http_requests_rejected_queue_full_total',
    help: 'POST /v1/events answered 503 queue_full because the event channel could not take the whole request',
    read: (c) => c.rejectedQueueFull,
  },
  {
    kind: 'counter',
    name: 'http_requests_rejected_body_too_large_total',
    help: 'POST /v1/events answered 413 because the body passed MAX_BODY_BYTES on the wire or decompressed',
    read: (c) => c.rejectedBodyTooLarge,
  },
  {
    kind: 'counter',
    name: 'http_requests_rejected_busy_total',
    help: 'POST /v1/events answered 503 busy: bodies being read fill MAX_BODIES_IN_FLIGHT_BYTES',
    read: (c) => c.rejectedBusy,
  },
  {
    kind: 'counter',
    name: 'http_requests_rejected_dlq_full_total',
    help: 'POST /v1/events answered 503 queue_full because the DLQ was full (ACK_LEVEL=disk or s3, which refuse rather than evict acknowledged events)',
    read: (c) => c.rejectedDlqFull,
  },
  {
    kind: 'counter',
    name: 'http_requests_ack_timeout_total',
    help: 'POST /v1/events answered 503 ack_timeout: ACK_LEVEL=s3 and the events were not confirmed stored within ACK_TIMEOUT_MS (they may still be)',
    read: (c) => c.ackTimeouts,
  },
  {
    kind: 'counter',
    name: 'http_requests_rejected_awaiting_answers_total',
    help: 'POST /v1/events answered 503 awaiting_answers: a worker thread\'s bodies awaiting their answer fill its share of MAX_BODIES_IN_FLIGHT_BYTES',
    read: (c) => c.rejectedAwaitingAnswers,
  },
  {
    kind: 'counter',
    name: 'http_requests_withdrawn_total',
    help: 'POST /v1/events requests whose client was gone before they were handed to the pipeline: neither stored nor answered',
    read: (c) => c.requestsWithdrawn,
  },
  {
    kind: 'gauge',
    name: 'http_bodies_awaiting_answer_bytes',
    help: 'WORKERS > 1: bytes of bodies handed to the main thread and awaiting their answer, against each worker\'s share of MAX_BODIES_IN_FLIGHT_BYTES',
    read: (c) => c.bodiesAwaitingBytes,
  },
  {
    kind: 'gauge',
    name: 'http_bodies_in_flight_bytes',
    help: 'Capacity of the buffers of request bodies being read, against MAX_BODIES_IN_FLIGHT_BYTES',
    read: (c) => c.bodiesInFlightBytes,
  },
  {
    kind: 'gauge',
    name: 'http_connections_open',
    help: 'Client connections open on the ingest port, against MAX_CONNECTIONS',
    read: (c) => c.connectionsOpen,
  },
  {
    kind: 'counter',
    name: 'http_connections_refused_total',
    help: 'Connections closed as soon as accepted because MAX_CONNECTIONS were open',
    read: (c) => c.connectionsRefused,
  },
  { kind: 'counter', name: 'ingest_events_accepted_total', help: 'Events answered with 202 and put in the event channel', read: (c) => c.eventsAccepted },
];

/** `workers`: the counts of the worker threads (WORKERS > 1), added to the main thread's own at each scrape. */
export function createHttpMetrics(registry: Registry, workers: readonly HttpCounts[] = []): HttpCounts {
  const counts = new HttpCounts();
  const all = [counts, ...workers];
  const sum: Sum = (read) => all.reduce((total, c) => total + read(c), 0);
  requestsByStatus(registry, sum);
  answersLost(registry, sum);
  for (const { kind, name, help, read } of SUMMED) (kind === 'counter' ? summedCounter : summedGauge)(registry, name, help, () => sum(read));
  new Gauge({
    name: 'http_engine_info',
    // The server starts only on uWebSockets.js's native addon; dashboards read the label.
    help: 'HTTP engine in use: 1 for "native" uWebSockets.js, the only one the server starts on',
    labelNames: ['engine'],
    registers: [registry],
  }).set({ engine: 'native' }, 1);
  return counts;
}

/** http_requests_total by status, caught up at each scrape like summedCounter's. */
function requestsByStatus(registry: Registry, sum: Sum): void {
  const reported = Object.fromEntries(STATUSES.map((s) => [s, 0])) as Record<Status, number>;
  new Counter({
    name: 'http_requests_total',
    help: 'HTTP requests answered, by status code',
    labelNames: ['status'],
    registers: [registry],
    collect() {
      for (const status of STATUSES) {
        const now = sum((c) => c.requests[status]);
        this.inc({ status }, now - reported[status]);
        reported[status] = now;
      }
    },
  });
}

/** http_answers_lost_total by reason: requests stored whose 202 could not be sent. */
function answersLost(registry: Registry, sum: Sum): void {
  const reasons = { client_gone: (c: HttpCounts) => c.answersLostClientGone, worker_crashed: (c: HttpCounts) => c.answersLostWorkerCrashed };
  const reported = { client_gone: 0, worker_crashed: 0 };
  new Counter({
    name: 'http_answers_lost_total',
    help: 'POST /v1/events requests whose events were stored but whose answer could not be sent, by reason: client_gone, worker_crashed',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      for (const reason of ['client_gone', 'worker_crashed'] as const) {
        const now = sum(reasons[reason]);
        this.inc({ reason }, now - reported[reason]);
        reported[reason] = now;
      }
    },
  });
}

/** A gauge read at each scrape. */
function summedGauge(registry: Registry, name: string, help: string, read: () => number): void {
  new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(read());
    },
  });
}

/** A counter that, at each scrape, catches up with a plain integer the hot path increments. */
export function summedCounter(registry: Registry, name: string, help: string, read: () => number): void {
  let reported = 0;
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      const now = read();
      this.inc(now - reported);
      reported = now;
    },
  });
}
