// HTTP front metrics: requests by status, rejections the alert rules watch, engine.
// The hot path only bumps plain integers; prom-client reads them when /metrics is scraped.
import { Counter, Gauge, type Registry } from 'prom-client';

/** Every status the front answers. */
const STATUSES = ['200', '202', '204', '400', '401', '403', '404', '405', '413', '415', '500', '503'] as const;
export type Status = (typeof STATUSES)[number];

export class HttpCounts {
  readonly requests: Record<Status, number> = Object.fromEntries(STATUSES.map((s) => [s, 0])) as Record<Status, number>;
  rejectedQueueFull = 0;
  rejectedBodyTooLarge = 0;
  /** 503 `busy`: the bodies being read fill MAX_BODIES_IN_FLIGHT_BYTES. */
  rejectedBusy = 0;
  eventsAccepted = 0;
  /** Capacity of the buffers of request bodies being read (a gauge, kept by the body budget). */
  bodiesInFlightBytes = 0;
  /** Client connections open now (a gauge, kept by the connection cap). */
  connectionsOpen = 0;
  /** Connections closed as soon as accepted, for being over the connection cap. */
  connectionsRefused = 0;
}

export function createHttpMetrics(registry: Registry, engine: 'native' | 'js-fallback'): HttpCounts {
  const counts = new HttpCounts();
  // A counter that, at each scrape, catches up with a plain integer the hot path increments.
  const counter = (name: string, help: string, read: () => number): void => {
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
  };
  const requestsReported = Object.fromEntries(STATUSES.map((s) => [s, 0])) as Record<Status, number>;
  new Counter({
    name: 'http_requests_total',
    help: 'HTTP requests answered, by status code',
    labelNames: ['status'],
    registers: [registry],
    collect() {
      for (const status of STATUSES) {
        this.inc({ status }, counts.requests[status] - requestsReported[status]);
        requestsReported[status] = counts.requests[status];
      }
    },
  });
  counter(
    'http_requests_rejected_queue_full_total',
    'POST /v1/events answered 503 queue_full because the event channel could not take the whole request',
    () => counts.rejectedQueueFull,
  );
  counter(
    'http_requests_rejected_body_too_large_total',
    'POST /v1/events answered 413 because the body passed MAX_BODY_BYTES on the wire or decompressed',
    () => counts.rejectedBodyTooLarge,
  );
  counter(
    'http_requests_rejected_busy_total',
    'POST /v1/events answered 503 busy: bodies being read fill MAX_BODIES_IN_FLIGHT_BYTES',
    () => counts.rejectedBusy,
  );
  new Gauge({
    name: 'http_bodies_in_flight_bytes',
    help: 'Capacity of the buffers of request bodies being read, against MAX_BODIES_IN_FLIGHT_BYTES',
    registers: [registry],
    collect() {
      this.set(counts.bodiesInFlightBytes);
    },
  });
  new Gauge({
    name: 'http_connections_open',
    help: 'Client connections open on the ingest port, against MAX_CONNECTIONS',
    registers: [registry],
    collect() {
      this.set(counts.connectionsOpen);
    },
  });
  counter(
    'http_connections_refused_total',
    'Connections closed as soon as accepted because MAX_CONNECTIONS were open',
    () => counts.connectionsRefused,
  );
  counter('ingest_events_accepted_total', 'Events answered with 202 and put in the event channel', () => counts.eventsAccepted);
  const engineInfo = new Gauge({
    name: 'http_engine_info',
    help: 'HTTP engine in use: 1 for "native" uWebSockets.js or its much slower "js-fallback"',
    labelNames: ['engine'],
    registers: [registry],
  });
  engineInfo.set({ engine }, 1);
  return counts;
}
