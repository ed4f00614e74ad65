// ACK_LEVEL and DURABLE_ROOT wiring for main: the lease on a shared root, the WAL opened and
// replayed (disk), the answers that wait for S3 (s3), and the adoption of dead instances' directories.
import path from 'node:path';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Config } from '../config.js';
import type { DlqMetrics } from '../metrics/dlq.js';
import type { UploadMetrics } from '../metrics/upload.js';
import { createWalMetrics, observeWal } from '../metrics/wal.js';
import type { Pipeline, PipelineOptions } from '../pipeline.js';
import type { Spill } from '../upload/loop.js';
import type { S3Uploader } from '../upload/s3.js';
import { Acks } from './acks.js';
import { Adopter } from './adopt.js';
import { Lease } from './lease.js';
import { WriteAheadLog } from './log.js';
import { type Recovered, recover } from './replay.js';

export { WalLocked } from './replay.js';

/** What adopting a dead instance's directory needs of the rest of the server. */
export interface AdoptionNeeds {
  readonly pipeline: PipelineOptions;
  readonly uploader: S3Uploader;
  readonly spill: Spill;
  readonly uploadMetrics: UploadMetrics;
  readonly dlqMetrics: DlqMetrics;
}

export interface Durability {
  /** What the pipeline tells of cuts and settled batches; undefined with ACK_LEVEL=memory. */
  readonly journal: Acks | undefined;
  /** Hands the pipeline what an earlier run left in the WAL; before listening. */
  start(pipeline: Pipeline): void;
  /** With DURABLE_ROOT: starts looking for dead instances' directories to adopt. */
  adopt(needs: AdoptionNeeds): void;
  /** Stops adopting, writes what is queued, releases the directories; says what stays for the next start. */
  close(): Promise<void>;
}

/** Before the DLQ is opened: with DURABLE_ROOT the lease must be fresh before this instance's directories are used. */
export async function openDurability(config: Config, registry: Registry, log: Logger): Promise<Durability> {
  const { ackLevel, instanceId, wal: walConfig } = config;
  const root = walConfig.sharedRoot;
  const metrics = ackLevel === 'disk' || root !== undefined ? createWalMetrics(registry) : undefined;
  const lease = root === undefined ? undefined : await Lease.take(path.join(root, instanceId), instanceId, walConfig.leaseStaleMs, log);
  let recovered: Recovered | undefined;
  let wal: WriteAheadLog | undefined;
  if (ackLevel === 'disk') {
    recovered = await recover(walConfig.dir, instanceId, metrics!, log);
    wal = new WriteAheadLog(walConfig, recovered.logId, recovered.segments, recovered.nextSeq, metrics!, log);
    observeWal(registry, wal, walConfig.maxBytes);
  }
  // With a lease, a 202 only while it is fresh (fencing: ./lease.ts).
  const journal = ackLevel === 'memory' ? undefined : new Acks(wal, instanceId, recovered?.cutSegs, lease === undefined ? undefined : () => lease.fresh());
  let adopter: Adopter | undefined;
  return {
    journal,
    start: (pipeline) => {
      journal?.feed(pipeline);
      if (recovered === undefined) return;
      for (const batch of recovered.batches) pipeline.resubmit(batch);
      for (const entry of recovered.entries) pipeline.restore(entry);
      metrics!.replayedEvents.inc(recovered.events);
      if (recovered.events > 0 || recovered.lost > 0) {
        log.info({ events: recovered.events, batches: recovered.batches.length, entries: recovered.entries.length, lost: recovered.lost }, `WAL: replaying ${recovered.events} events an earlier run acknowledged and did not settle`);
      }
    },
    adopt: (needs) => {
      if (root === undefined) return;
      adopter = new Adopter(
        {
          instanceId,
          wal: { ...walConfig, sharedRoot: root },
          pipeline: needs.pipeline,
          dlq: { ttlSeconds: config.dlqTtlSeconds, prefix: config.s3.prefix },
          uploader: needs.uploader,
          spill: needs.spill,
          metrics: { wal: metrics!, upload: needs.uploadMetrics, dlq: needs.dlqMetrics },
          fresh: () => lease!.fresh(),
        },
        log.child({ part: 'adopt' }),
      );
      adopter.start();
    },
    close: async () => {
      await adopter?.stop();
      if (wal !== undefined) {
        const { unsettled, segments } = await wal.close();
        recovered!.lock.release();
        if (unsettled > 0) log.warn({ unsettledEvents: unsettled, segments, dir: walConfig.dir }, `WAL: ${unsettled} acknowledged events stay in the WAL; the next start on ${walConfig.dir} uploads them`);
        else log.info({ segments }, 'WAL closed: every event settled');
      }
      await lease?.release();
    },
  };
}
