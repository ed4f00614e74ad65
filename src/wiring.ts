// The one place a running pipeline is built: its ack level (ACK_LEVEL), and at `disk` its
// write-ahead log taken, repaired and replayed into it. The server (main.ts) and the adoption of a
// dead instance's WAL (src/wal/adopt.ts, through the replay main gives it) both use it.
import type { Logger } from 'pino';
import { type Acks, DiskAcks, memoryAcks, S3Acks } from './acks.js';
import type { AckLevel } from './config.js';
import type { UploadMetrics } from './metrics/upload.js';
import type { WalMetrics } from './metrics/wal.js';
import { Pipeline, type PipelineOptions } from './pipeline.js';
import type { Spill } from './upload/loop.js';
import type { S3Uploader } from './upload/s3.js';
import { KeyJournal } from './wal/key-journal.js';
import { WriteAheadLog, type WalOptions } from './wal/log.js';
import { type KeyAt, type Recovered, recover } from './wal/replay.js';

/** ACK_LEVEL=disk: how often a batch neither S3 nor the DLQ took is tried again (each try is UPLOAD_MAX_ATTEMPTS PUTs, then a save). */
const KEEP_UNSPILLED_MS = 1000;

export interface PipelineSpec {
  /** `batch.instanceId` names the batches: an adopted WAL keeps its dead instance's. */
  readonly options: PipelineOptions;
  readonly ackLevel: AckLevel;
  /** ACK_LEVEL=s3: how long a request waits for its batches before it is answered unconfirmed. */
  readonly ackTimeoutMs: number;
  /** ACK_LEVEL=disk: the log's settings, and the instance that takes its directory's lock. */
  readonly wal?: WalOptions & { readonly holder: string; readonly metrics: WalMetrics; readonly keys?: KeysSpec };
  /** On a shared root: whether this instance may acknowledge now (its lease is fresh). */
  readonly fresh: () => boolean;
}

/** The server's own WAL: its Idempotency-Keys kept in WAL_DIR/keys/ for the window (src/wal/key-journal.ts); not an adopted WAL's. */
export interface KeysSpec {
  readonly windowMs: number;
  readonly maxKeys: number;
}

export interface PipelineDeps {
  readonly uploader: S3Uploader;
  readonly spill: Spill;
  readonly metrics: UploadMetrics;
  readonly log: Logger;
}

export interface RunningPipeline {
  readonly pipeline: Pipeline;
  /** ACK_LEVEL=disk: the log, for its gauges. */
  readonly wal: WriteAheadLog | undefined;
  /** ACK_LEVEL=disk: the Idempotency-Keys the log and its key journal held at start, within the window, oldest first (src/idempotency.ts). */
  readonly keys: readonly KeyAt[];
  /** After pipeline.close(): writes what is queued and releases the log's directory; the events left in it for the next start. */
  closeWal(): Promise<number>;
}

/** Builds the pipeline; at `disk`, what the log holds unsettled is in it before this resolves (throws WalLocked). */
export async function startPipeline(spec: PipelineSpec, deps: PipelineDeps): Promise<RunningPipeline> {
  const { log } = deps;
  const walSpec = spec.ackLevel === 'disk' ? spec.wal : undefined;
  if (walSpec === undefined) {
    const acks: Acks = spec.ackLevel === 's3' ? new S3Acks(spec.ackTimeoutMs) : memoryAcks;
    return { pipeline: new Pipeline(spec.options, { ...deps, acks }), wal: undefined, keys: [], closeWal: () => Promise.resolve(0) };
  }
  const recovered = await recover(walSpec.dir, walSpec.holder, walSpec.metrics, log, walSpec.disk);
  const { journal, keys } = await openJournal(walSpec, recovered, log);
  const wal = new WriteAheadLog({ ...walSpec, ...(journal && { journal }) }, recovered.logId, recovered.segments, recovered.nextSeq, walSpec.metrics, log);
  const acks = new DiskAcks(wal, spec.options.batch.instanceId, recovered.cutSegs, spec.fresh);
  // Acknowledged events are never dropped: a batch neither S3 nor the DLQ takes is tried again.
  const upload = { ...spec.options.upload, keepUnspilledMs: spec.options.upload.keepUnspilledMs ?? KEEP_UNSPILLED_MS };
  const pipeline = new Pipeline({ ...spec.options, upload }, { ...deps, acks });
  replay(pipeline, recovered, walSpec.metrics, log);
  return { pipeline, wal, keys, closeWal: () => closeWal(wal, recovered, walSpec.dir, log) };
}

/** With `keys`: the key journal beside the log, and the keys of both; else the log's alone. */
async function openJournal(walSpec: NonNullable<PipelineSpec['wal']>, recovered: Recovered, log: Logger): Promise<{ journal?: KeyJournal; keys: readonly KeyAt[] }> {
  if (walSpec.keys === undefined) return { keys: recovered.keys };
  try {
    return await KeyJournal.open(walSpec.dir, recovered.keys, { ...walSpec.keys, ...(walSpec.disk && { disk: walSpec.disk }) }, log);
  } catch (err) {
    recovered.lock.release();
    throw err;
  }
}

function replay(pipeline: Pipeline, recovered: Recovered, metrics: WalMetrics, log: Logger): void {
  for (const batch of recovered.batches) pipeline.resubmit(batch);
  for (const entry of recovered.entries) pipeline.restore(entry);
  metrics.replayedEvents.inc(recovered.events);
  if (recovered.events > 0 || recovered.lost > 0) {
    const { events, batches, entries, lost } = recovered;
    log.info({ events, batches: batches.length, entries: entries.length, lost }, 'WAL: replaying events an earlier run acknowledged and did not settle');
  }
}

async function closeWal(wal: WriteAheadLog, recovered: Recovered, dir: string, log: Logger): Promise<number> {
  const { unsettled, segments } = await wal.close();
  recovered.lock.release();
  if (unsettled > 0) log.warn({ unsettledEvents: unsettled, segments, dir }, 'WAL: acknowledged events stay in the WAL; the next start on its directory uploads them');
  else log.info({ segments }, 'WAL closed: every event settled');
  return unsettled;
}
