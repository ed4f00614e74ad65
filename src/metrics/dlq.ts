// Dead-letter queue metrics: what is queued (read at scrape time), what came and went, what was lost.
import { Counter, Gauge, type Registry } from 'prom-client';

export interface DlqMetrics {
  eventsDropped: Counter<'reason'>;
  eventsSpilled: Counter;
  eventsReuploaded: Counter;
  eventsTaken: Counter;
  filesExpired: Counter;
  filesCorrupt: Counter;
  filesRejected: Counter<'reason'>;
  writeFailures: Counter;
  batchesRefused: Counter;
}

export interface DlqState {
  readonly files: number;
  readonly bytes: number;
  readonly events: number;
  readonly oldestSpilledAt: number | undefined;
  readonly full: boolean;
}

export const DROP_REASONS = ['capacity', 'ttl', 'write_failed', 'quarantined'] as const;
export type DropReason = (typeof DROP_REASONS)[number];
const REJECT_REASONS = ['not_regular', 'unreadable', 'bad_key', 'too_large'] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

export function createDlqMetrics(registry: Registry): DlqMetrics {
  const counter = (name: string, help: string) => new Counter({ name, help, registers: [registry] });
  // Every series exists from the start, so "increase() > 0" alerts and dashboards see a zero, not nothing.
  const byReason = (name: string, help: string, reasons: readonly string[]) => {
    const labelled = new Counter({ name, help, labelNames: ['reason'], registers: [registry] });
    for (const reason of reasons) labelled.inc({ reason }, 0);
    return labelled;
  };
  const eventsDropped = byReason('dlq_events_dropped_total', 'Accepted events that were lost, by reason: capacity (evicted), ttl (expired), write_failed (could not be spilled), quarantined (their file was moved to corrupt/)', DROP_REASONS);
  const filesRejected = byReason(
    'dlq_files_rejected_total',
    'Entries in DLQ_DIR never uploaded, by reason: not_regular (left in place), unreadable, bad_key (key outside S3_PREFIX) or too_large (over DLQ_MAX_BYTES; the last three moved to corrupt/)',
    REJECT_REASONS,
  );
  return {
    eventsDropped,
    eventsSpilled: counter('dlq_events_spilled_total', 'Events written to the DLQ after their upload failed'),
    eventsReuploaded: counter('dlq_events_reuploaded_total', 'Events re-uploaded from the DLQ to S3'),
    eventsTaken: counter('dlq_events_taken_total', 'Events in DLQ files another process removed while this one owned the directory (dlq drain, or by hand): not dropped by this process, nor known to be in S3'),
    filesExpired: counter('dlq_files_expired_total', 'DLQ files deleted because they were older than DLQ_TTL_SECONDS'),
    filesCorrupt: counter('dlq_files_corrupt_total', 'DLQ files that failed their integrity check and were moved aside'),
    filesRejected,
    writeFailures: counter('dlq_write_failures_total', 'Batches that could not be written to the DLQ (disk full, I/O error, permissions)'),
    batchesRefused: counter('dlq_batches_refused_total', 'Batches not written because the DLQ was full (ACK_LEVEL=disk or s3, which refuse rather than evict): kept in the WAL (disk) or answered 503 (s3)'),
  };
}

export function observeDlq(registry: Registry, state: DlqState, now: () => number): void {
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
  gauge('dlq_files_current', 'Files queued in the DLQ', () => state.files);
  gauge('dlq_bytes_current', 'Bytes queued in the DLQ', () => state.bytes);
  gauge('dlq_events_current', 'Events queued in the DLQ', () => state.events);
  gauge('dlq_full', '1 while the DLQ refuses new batches (ACK_LEVEL=disk or s3, DLQ_MAX_BYTES or DLQ_MAX_FILES reached): the server then refuses new events', () => (state.full ? 1 : 0));
  gauge('dlq_oldest_age_seconds', 'Age of the oldest DLQ file, 0 when empty', () =>
    state.oldestSpilledAt === undefined ? 0 : Math.max(0, (now() - state.oldestSpilledAt) / 1000),
  );
}
