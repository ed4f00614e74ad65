// CloudWatch Embedded Metric Format: the key metrics as one JSON line on stdout per interval,
// which awslogs on ECS turns into CloudWatch metrics (namespace EventIngest, dimension Service).
// Counters are sent as the increase over the interval, gauges as their value.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Registry } from 'prom-client';
import { ACCESS_CODES } from './s3-codes.js';

const NAMESPACE = 'EventIngest';
const EVENT_LOOP_LAG = 'nodejs_eventloop_lag_p99_seconds';
const SERVICE = 'event-ingest';

/**
 * The metrics sent, their CloudWatch unit, and whether they are counters (sent as increases). Two
 * are one label's share of a Prometheus metric (`source`, `only`), for alarms that need it alone.
 */
export const EMF_METRICS: readonly { name: string; unit: 'Count' | 'Bytes' | 'Seconds'; counter: boolean; source?: string; only?: { label: string; values: readonly string[] } }[] = [
  { name: 'ingest_events_accepted_total', unit: 'Count', counter: true },
  { name: 'http_requests_rejected_queue_full_total', unit: 'Count', counter: true },
  { name: 'http_requests_rejected_body_too_large_total', unit: 'Count', counter: true },
  { name: 's3_events_stored_total', unit: 'Count', counter: true },
  { name: 's3_put_errors_total', unit: 'Count', counter: true },
  { name: 's3_put_errors_access_denied_total', unit: 'Count', counter: true, source: 's3_put_errors_total', only: { label: 'code', values: ACCESS_CODES } },
  { name: 's3_put_failing_seconds', unit: 'Seconds', counter: false },
  { name: 's3_preflight_ok', unit: 'Count', counter: false },
  { name: 'dlq_events_spilled_total', unit: 'Count', counter: true },
  { name: 'dlq_events_reuploaded_total', unit: 'Count', counter: true },
  { name: 'dlq_events_dropped_total', unit: 'Count', counter: true },
  { name: 'dlq_files_expired_total', unit: 'Count', counter: true },
  { name: 'dlq_files_corrupt_total', unit: 'Count', counter: true },
  { name: 'dlq_files_rejected_total', unit: 'Count', counter: true },
  { name: 'channel_events', unit: 'Count', counter: false },
  { name: 'dlq_files_current', unit: 'Count', counter: false },
  { name: 'dlq_bytes_current', unit: 'Bytes', counter: false },
  { name: 'dlq_oldest_age_seconds', unit: 'Seconds', counter: false },
  { name: 'dlq_full', unit: 'Count', counter: false },
  // ACK_LEVEL=disk only; 0 otherwise (not in the registry).
  { name: 'wal_bytes_current', unit: 'Bytes', counter: false },
  { name: 'wal_max_bytes', unit: 'Bytes', counter: false },
  { name: EVENT_LOOP_LAG, unit: 'Seconds', counter: false },
];

/** Starts the interval; returns a function that writes a last line and stops it. */
export function startEmf(registry: Registry, intervalMs: number, instanceId: string, write: (line: string) => void): () => Promise<void> {
  const previous = new Map<string, number>();
  // prom-client updates its event-loop gauges only when /metrics is read: without Prometheus they
  // would stay 0. The EMF line measures its own p99 over each interval.
  const lag = monitorEventLoopDelay({ resolution: 10 });
  lag.enable();
  const emit = async (): Promise<void> => {
    const line: Record<string, unknown> = {
      _aws: {
        Timestamp: Date.now(),
        CloudWatchMetrics: [{ Namespace: NAMESPACE, Dimensions: [['Service']], Metrics: EMF_METRICS.map(({ name, unit }) => ({ Name: name, Unit: unit })) }],
      },
      Service: SERVICE,
      InstanceId: instanceId,
    };
    for (const { name, counter, source = name, only } of EMF_METRICS) {
      if (name === EVENT_LOOP_LAG) {
        line[name] = lag.count === 0 ? 0 : lag.percentile(99) / 1e9;
        lag.reset();
        continue;
      }
      const metric = registry.getSingleMetric(source);
      // Summed over labels (codes, reasons): CloudWatch alarms on the total, or on `only`'s share.
      const values = metric === undefined ? [] : (await metric.get()).values;
      const total = values
        .filter((v) => only === undefined || only.values.includes(String(v.labels[only.label])))
        .reduce((sum, v) => sum + v.value, 0);
      line[name] = counter ? total - (previous.get(name) ?? 0) : total;
      previous.set(name, total);
    }
    write(`${JSON.stringify(line)}\n`);
  };
  // A failed registry read skips one line; the next line's increases include what it missed.
  const timer = setInterval(() => {
    emit().catch(() => {});
  }, intervalMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await emit();
    lag.disable();
  };
}
