// Write-ahead log metrics (ACK_LEVEL=disk): size read at scrape time, fsyncs, replay, damage, adoption.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface WalMetrics {
  fsyncSeconds: Histogram;
  groupSize: Histogram;
  replayedEvents: Counter;
  quarantinedSegments: Counter;
  tornTails: Counter;
  lostEvents: Counter;
  corruptRecords: Counter;
  skippedBytes: Counter;
  writeFailures: Counter;
  adoptedDirs: Counter;
}

export interface WalState {
  readonly bytes: number;
  readonly segments: number;
}

export function createWalMetrics(registry: Registry): WalMetrics {
  const registers = [registry];
  return {
    fsyncSeconds: new Histogram({
      name: 'wal_fsync_seconds',
      help: 'Duration of each write-ahead log group commit: write and fdatasync',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    }),
    groupSize: new Histogram({
      name: 'wal_group_size',
      help: 'Requests acknowledged by each write-ahead log fsync',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 1024],
      registers,
    }),
    replayedEvents: new Counter({ name: 'wal_replayed_events_total', help: 'Events found in the write-ahead log at start-up (own or adopted) and sent again', registers }),
    quarantinedSegments: new Counter({ name: 'wal_segments_quarantined_total', help: 'Segments with a corrupt record, copied to corrupt/ at start-up', registers }),
    tornTails: new Counter({ name: 'wal_torn_tails_total', help: 'Partial records cut from the end of the last segment at start-up (writes never fsynced)', registers }),
    lostEvents: new Counter({ name: 'wal_lost_events_total', help: 'Acknowledged events missing from the WAL in batches a corrupt record cut short, found at start-up (lost unless the complete batch reached S3 before; the rest is PUT If-None-Match)', registers }),
    corruptRecords: new Counter({ name: 'wal_records_corrupt_total', help: 'Corrupt stretches of write-ahead log segments skipped at start-up (a record whose checksum failed, up to the next valid record)', registers }),
    skippedBytes: new Counter({ name: 'wal_bytes_skipped_total', help: 'Bytes of write-ahead log segments skipped at start-up as corrupt', registers }),
    writeFailures: new Counter({ name: 'wal_write_failures_total', help: 'Failed write-ahead log writes or fsyncs; the log then refuses every request (503)', registers }),
    adoptedDirs: new Counter({ name: 'wal_adopted_dirs_total', help: 'Directories of dead instances taken over on a shared root', registers }),
  };
}

export function observeWal(registry: Registry, state: WalState, maxBytes: number): void {
  new Gauge({ name: 'wal_bytes_current', help: 'Bytes in write-ahead log segments', registers: [registry], collect() { this.set(state.bytes); } });
  // For alerts on wal_bytes_current / wal_max_bytes: past the limit every request is refused.
  new Gauge({ name: 'wal_max_bytes', help: 'WAL_MAX_BYTES: past it the write-ahead log refuses every request (503 queue_full)', registers: [registry] }).set(maxBytes);
  new Gauge({ name: 'wal_segments_current', help: 'Write-ahead log segments on disk', registers: [registry], collect() { this.set(state.segments); } });
}
