// ACK_LEVEL wiring for main: the WAL opened and replayed (disk), or the answers that wait for S3 (s3).
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { AckLevel, WalConfig } from '../config.js';
import { createWalMetrics, observeWal } from '../metrics/wal.js';
import type { Pipeline } from '../pipeline.js';
import { Acks } from './acks.js';
import { WriteAheadLog } from './log.js';
import { recover } from './replay.js';

export { WalLocked } from './replay.js';

export interface Durability {
  /** What the pipeline tells of cuts and settled batches; undefined with ACK_LEVEL=memory. */
  readonly journal: Acks | undefined;
  /** Hands the pipeline what an earlier run left in the WAL; before listening. */
  start(pipeline: Pipeline): void;
  /** Writes what is queued, releases the directory; says what stays for the next start. */
  close(): Promise<void>;
}

export async function openDurability(level: AckLevel, config: WalConfig, instanceId: string, registry: Registry, log: Logger): Promise<Durability> {
  if (level === 'memory') return { journal: undefined, start: () => {}, close: async () => {} };
  if (level === 's3') {
    const journal = new Acks(undefined, instanceId);
    return { journal, start: (pipeline) => journal.feed(pipeline), close: async () => {} };
  }
  const metrics = createWalMetrics(registry);
  const recovered = await recover(config.dir, instanceId, metrics, log);
  const wal = new WriteAheadLog(config, recovered.logId, recovered.segments, recovered.nextSeq, metrics, log);
  observeWal(registry, wal);
  const journal = new Acks(wal, instanceId, recovered.cutSegs);
  return {
    journal,
    start: (pipeline) => {
      journal.feed(pipeline);
      for (const batch of recovered.batches) pipeline.resubmit(batch);
      for (const entry of recovered.entries) pipeline.restore(entry);
      metrics.replayedEvents.inc(recovered.events);
      if (recovered.events > 0 || recovered.lost > 0) {
        log.info({ events: recovered.events, batches: recovered.batches.length, entries: recovered.entries.length, lost: recovered.lost }, `WAL: replaying ${recovered.events} events an earlier run acknowledged and did not settle`);
      }
    },
    close: async () => {
      const { unsettled, segments } = await wal.close();
      recovered.lock.release();
      if (unsettled > 0) log.warn({ unsettledEvents: unsettled, segments, dir: config.dir }, `WAL: ${unsettled} acknowledged events stay in the WAL; the next start on ${config.dir} uploads them`);
      else log.info({ segments }, 'WAL closed: every event settled');
    },
  };
}
