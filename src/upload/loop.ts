// Cut batches -> compressed off the event loop -> S3, at most UPLOAD_CONCURRENCY at once; failures to the spill.
//
// Bounds: UPLOAD_QUEUE_MAX_BATCHES batches wait for a slot; while that many wait, hasRoom() is
// false and the batcher stops pulling from the channel. Once aborted (the shutdown deadline),
// PUTs in flight are cut and every batch, queued or new, goes straight to the spill.
import { setTimeout as sleep } from 'node:timers/promises';
import PQueue from 'p-queue';
import type { Logger } from 'pino';
import type { UploadMetrics } from '../metrics/upload.js';
import { type Batch, type BatchSink, encodeLines } from './batcher.js';
import { codecOfKey, compress } from './codec.js';
import { errorCode, httpStatus, UploadAborted } from './errors.js';
import type { S3Uploader } from './s3.js';

/** Where a batch goes when its last upload attempt failed: the DLQ's seam. */
export interface Spill {
  /** Resolves true once the batch is durably on disk, false when it is not (refused when full, or the write failed); never rejects. */
  save(batch: Batch, body: Buffer): Promise<boolean>;
  /** True while save() refuses every batch (ACK_LEVEL=disk, s3: the DLQ is full). */
  readonly full: boolean;
}

/**
 * Where a batch ended up: in S3, in the DLQ, lost (counted and logged), or kept: neither took it
 * and its events stay where they are acknowledged from (the WAL) for the next start.
 */
export type Settled = 'stored' | 'spilled' | 'dropped' | 'kept';

export interface UploadLoopOptions {
  readonly concurrency: number;
  readonly maxQueuedBatches: number;
  readonly gzipLevel: number;
  readonly zstdLevel: number;
  /**
   * ACK_LEVEL=disk: a batch neither S3 nor the DLQ took is not dropped but tried again after this
   * many ms, holding its upload slot, so that a full DLQ stops intake (the slots, then the queue,
   * then the channel fill) instead of losing acknowledged events. Undefined: it is dropped.
   */
  readonly keepUnspilledMs?: number;
}

export class UploadLoop implements BatchSink {
  readonly #queue: PQueue;
  readonly #abort = new AbortController();
  #lastActiveAt = Date.now();
  #lastStoredAt = 0;

  /**
   * `slotFree` is called (on the loop's own stack) each time a batch finishes: room for another.
   * `settled` is told, once per batch, where it ended up.
   */
  constructor(
    private readonly uploader: S3Uploader,
    private readonly spill: Spill,
    private readonly options: UploadLoopOptions,
    private readonly metrics: UploadMetrics,
    private readonly log: Logger,
    slotFree: () => void,
    private readonly settled: (batch: Batch, outcome: Settled) => void,
  ) {
    this.#queue = new PQueue({ concurrency: options.concurrency });
    this.#queue.addEventListener('next', () => {
      this.#lastActiveAt = Date.now();
      slotFree();
    });
  }

  get queued(): number {
    return this.#queue.size;
  }

  get inFlight(): number {
    return this.#queue.pending;
  }

  /** When the last batch finished, or undefined while batches wait or upload. */
  idleSince(): number | undefined {
    return this.#queue.size + this.#queue.pending === 0 ? this.#lastActiveAt : undefined;
  }

  /** When S3 last took a live batch (0: never in this process). */
  lastStoredAt(): number {
    return this.#lastStoredAt;
  }

  hasRoom(): boolean {
    return this.#abort.signal.aborted || this.#queue.size < this.options.maxQueuedBatches;
  }

  /** Aborts the PUTs in flight and sends every batch from now on straight to the spill. */
  abort(): void {
    this.#abort.abort(new UploadAborted('shutdown deadline: SHUTDOWN_TIMEOUT_MS passed'));
  }

  submit(batch: Batch): void {
    this.#queue.add(() => this.#upload(batch)).catch((err: unknown) => {
      // #upload catches what it can meet; only a bug (or memory running out) lands here.
      this.log.error({ key: batch.key, events: batch.events, err }, 'batch lost: neither uploaded nor spilled');
      this.settled(batch, this.options.keepUnspilledMs === undefined ? 'dropped' : 'kept');
    });
  }

  /** Resolves once hasRoom() is true. */
  onRoom(): Promise<void> {
    return this.#queue.onSizeLessThan(this.options.maxQueuedBatches);
  }

  /** Resolves when no batch is waiting or in flight. */
  onIdle(): Promise<void> {
    return this.#queue.onIdle();
  }

  async #upload(batch: Batch): Promise<void> {
    // The codec its key names: a batch replayed from the WAL keeps the one it was cut with.
    const body = await compress(encodeLines(batch), codecOfKey(batch.key), { gzip: this.options.gzipLevel, zstd: this.options.zstdLevel });
    this.metrics.batchEvents.observe(batch.events);
    this.metrics.batchBytes.observe(batch.bytes);
    this.metrics.batchCompressedBytes.observe(body.length);
    // The cut must be on disk before S3 can hold the object: a restart then re-cuts the same batch.
    // (After a failed WAL write `durable` resolves at once and the batch is PUT all the same.)
    if (batch.durable !== undefined) await batch.durable;
    const keepMs = this.options.keepUnspilledMs;
    for (let tries = 1; ; tries++) {
      const outcome = await this.#putOrSpill(batch, body);
      if (outcome !== 'dropped') return this.settled(batch, outcome);
      if (keepMs === undefined) return this.settled(batch, 'dropped');
      if (this.#abort.signal.aborted) return this.settled(batch, 'kept');
      // Once a batch: the DLQ's own line says it is full, each time it refuses.
      if (tries === 1) this.log.warn({ key: batch.key, events: batch.events, retryEveryMs: keepMs }, 'batch kept: neither S3 nor the DLQ took it; it stays in the WAL and is tried again');
      await sleep(keepMs, undefined, { signal: this.#abort.signal }).catch(() => {});
    }
  }

  async #putOrSpill(batch: Batch, body: Buffer): Promise<'stored' | 'spilled' | 'dropped'> {
    try {
      // Past the deadline this throws at once, without an attempt: the batch goes to the spill.
      await this.uploader.put({ key: batch.key, body, events: batch.events }, this.#abort.signal, { ifAbsent: batch.ifAbsent === true });
    } catch (error) {
      if (batch.ifAbsent === true && httpStatus(error) === 412) {
        // The complete batch, PUT before the crash: every event of it is in S3.
        this.log.info({ key: batch.key, events: batch.events }, 'WAL: an incomplete batch\'s key holds an object already, stored before the crash; not overwritten');
        return 'stored';
      }
      if (!this.#abort.signal.aborted) {
        this.log.error({ key: batch.key, events: batch.events, code: errorCode(error), err: error }, 'S3 upload failed for good');
      }
      return (await this.spill.save(batch, body)) ? 'spilled' : 'dropped';
    }
    this.#lastStoredAt = Date.now();
    this.metrics.eventsStored.inc(batch.events);
    this.metrics.objectsStored.inc();
    this.metrics.bytesStored.inc(body.length);
    return 'stored';
  }
}
