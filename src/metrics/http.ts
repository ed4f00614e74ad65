// HTTP front metrics: requests by status, rejections the operational guide alerts on, engine.
import { Counter, Gauge, type Registry } from 'prom-client';

/** Every status the front answers; children are made up front so counting costs no label lookup. */
export const STATUSES = ['200', '202', '204', '400', '401', '404', '405', '413', '415', '503'] as const;
export type Status = (typeof STATUSES)[number];

export interface HttpMetrics {
  requests: Record<Status, { inc(): void }>;
  rejectedQueueFull: Counter;
  rejectedBodyTooLarge: Counter;
  eventsAccepted: Counter;
}

export function createHttpMetrics(registry: Registry, engine: 'native' | 'js-fallback'): HttpMetrics {
  const requests = new Counter({
    name: 'http_requests_total',
    help: 'HTTP requests answered, by status code',
    labelNames: ['status'],
    registers: [registry],
  });
  const engineInfo = new Gauge({
    name: 'http_engine_info',
    help: 'HTTP engine in use: 1 for "native" uWebSockets.js or its much slower "js-fallback"',
    labelNames: ['engine'],
    registers: [registry],
  });
  engineInfo.set({ engine }, 1);
  return {
    requests: Object.fromEntries(STATUSES.map((s) => [s, requests.labels(s)])) as HttpMetrics['requests'],
    rejectedQueueFull: new Counter({
      name: 'http_requests_rejected_queue_full_total',
      help: 'POST /v1/events answered 503 queue_full because the event channel could not take the whole request',
      registers: [registry],
    }),
    rejectedBodyTooLarge: new Counter({
      name: 'http_requests_rejected_body_too_large_total',
      help: 'POST /v1/events answered 413 because the body passed MAX_BODY_BYTES on the wire or decompressed',
      registers: [registry],
    }),
    eventsAccepted: new Counter({
      name: 'ingest_events_accepted_total',
      help: 'Events answered with 202 and put in the event channel',
      registers: [registry],
    }),
  };
}
