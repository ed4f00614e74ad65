// Channel, batch and S3 upload metrics; queue depths are read at scrape time.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { ERROR_CODES } from './s3-codes.js';

/** Why a batch was cut (src/upload/batcher.ts): batches_cut_total's `reason`. */
export const CUT_REASONS = ['events', 'bytes', 'age', 'time', 'partitions', 'flush'] as const;

export interface UploadMetrics {
  putSeconds: Histogram<'result'>;
  putErrors: Counter<'code'>;
  eventsStored: Counter;
  objectsStored: Counter;
  bytesStored: Counter;
  batchEvents: Histogram;
  batchBytes: Histogram;
  batchCompressedBytes: Histogram;
  batchesCut: Counter<'reason'>;
  openBatches: Gauge;
}

export interface QueueDepths {
  channelEvents(): number;
  channelBytes(): number;
  uploadQueued(): number;
  uploadInFlight(): number;
}

const sizeBuckets = (from: number, to: number): number[] => {
  const buckets = [];
  for (let b = from; b <= to; b *= 4) buckets.push(b);
  return buckets;
};

export function createUploadMetrics(registry: Registry): UploadMetrics {
  const registers = [registry];
  const metrics: UploadMetrics = {
    putSeconds: new Histogram({
      name: 's3_put_duration_seconds',
      help: 'Duration of each S3 PutObject attempt, by result (ok or error)',
      labelNames: ['result'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    putErrors: new Counter({
      name: 's3_put_errors_total',
      help: 'Failed S3 PutObject attempts (a retried attempt counts too), by error code',
      labelNames: ['code'],
      registers,
    }),
    eventsStored: new Counter({ name: 's3_events_stored_total', help: 'Events written to S3', registers }),
    objectsStored: new Counter({ name: 's3_objects_stored_total', help: 'Objects written to S3', registers }),
    bytesStored: new Counter({ name: 's3_bytes_stored_total', help: 'Compressed bytes written to S3', registers }),
    batchEvents: new Histogram({
      name: 'batch_events',
      help: 'Events per cut batch',
      buckets: sizeBuckets(1, 262144),
      registers,
    }),
    batchBytes: new Histogram({
      name: 'batch_uncompressed_bytes',
      help: 'Uncompressed JSON-lines bytes per cut batch',
      buckets: sizeBuckets(1024, 268435456),
      registers,
    }),
    batchCompressedBytes: new Histogram({
      name: 'batch_compressed_bytes',
      help: 'Gzip bytes per batch as uploaded',
      buckets: sizeBuckets(256, 67108864),
      registers,
    }),
    batchesCut: new Counter({
      name: 'batches_cut_total',
      help: 'Batches cut, by reason: events, bytes, age, time (OBJECT_KEY time partition changed), partitions (PARTITIONS_MAX_OPEN), flush (shutdown)',
      labelNames: ['reason'],
      registers,
    }),
    openBatches: new Gauge({ name: 'batcher_open_batches', help: 'Batches being filled: 1, or one per {event.FIELD} value (at most PARTITIONS_MAX_OPEN)', registers }),
  };
  // Every labelled series exists from the start: increase() cannot see the first error of a series
  // that appears with it, and a dashboard shows 0 rather than "No data".
  for (const code of ERROR_CODES) metrics.putErrors.inc({ code }, 0);
  for (const result of ['ok', 'error']) metrics.putSeconds.zero({ result });
  for (const reason of CUT_REASONS) metrics.batchesCut.inc({ reason }, 0);
  return metrics;
}

export function observeQueueDepths(registry: Registry, depths: QueueDepths): void {
  const gauge = (name: string, help: string, read: () => number): void => {
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read());
      },
    });
  };
  gauge('channel_events', 'Events waiting in the event channel', depths.channelEvents);
  gauge('channel_bytes', 'JSON-lines bytes waiting in the event channel', depths.channelBytes);
  gauge('upload_queue_batches', 'Cut batches waiting for an upload slot', depths.uploadQueued);
  gauge('upload_inflight_batches', 'Batches being gzipped or uploaded', depths.uploadInFlight);
}

/**
 * How long S3 has taken no PUT while attempts failed or timed out: the alerts' instant signal of an
 * outage, a stall or a refusal, which drops to 0 at the first success (counters need a whole
 * window to forget).
 */
export function observeS3Failing(registry: Registry, failingSeconds: () => number): void {
  new Gauge({
    name: 's3_put_failing_seconds',
    help: 'Seconds since the start of the first failed S3 PutObject attempt with no success since; 0 once one succeeds',
    registers: [registry],
    collect() {
      this.set(failingSeconds());
    },
  });
}
