// Owns the data path behind the front: channel -> batcher -> upload loop -> spill to the DLQ.
//
// Invariants:
// - the front only asks and pushes (Intake); cutting, encoding and uploading run later, off the
//   request's stack (a drain is scheduled with setImmediate, never run inside tryPush);
// - every accepted event ends up stored, spilled or dropped, and the pipeline keeps those tallies
//   itself: close() reports them without reading metrics back;
// - close(deadline) is idempotent: it uploads what is held until the deadline, then aborts the
//   uploads in flight and spills the rest, waiting for the spill at most SPILL_GRACE_MS more.
import type { Logger } from 'pino';
import { Channel, type Entry, type Intake, type PushResult } from './channel.js';
import type { UploadMetrics } from './metrics/upload.js';
import { type Batch, Batcher, type BatcherOptions } from './upload/batcher.js';
import type { Journal } from './upload/journal.js';
import { type Spill, UploadLoop, type UploadLoopOptions } from './upload/loop.js';
import type { S3Uploader } from './upload/s3.js';

export interface PipelineOptions {
  readonly channelMaxEvents: number;
  readonly channelMaxBytes: number;
  readonly batch: BatcherOptions;
  readonly upload: UploadLoopOptions;
}

/** Where every accepted event went; `unaccounted` is always 0 unless the spill outlived its grace. */
export interface Summary {
  readonly uploadedInTime: boolean;
  readonly accepted: number;
  readonly stored: number;
  readonly spilled: number;
  readonly dropped: number;
  readonly unaccounted: number;
}

/**
 * After the deadline, how long the spill of what is left may take before close() gives up on it.
 * The ECS example leaves 5 s between SHUTDOWN_TIMEOUT_MS and the SIGKILL (docs/shutdown.md).
 */
export const SPILL_GRACE_MS = 3000;

export class Pipeline implements Intake {
  readonly #channel: Channel;
  readonly #batcher: Batcher;
  readonly #loop: UploadLoop;
  #accepted = 0;
  #drainScheduled = false;
  #closing: Promise<Summary> | undefined;

  constructor(
    options: PipelineOptions,
    uploader: S3Uploader,
    spill: Spill,
    metrics: UploadMetrics,
    private readonly log: Logger,
    journal?: Journal,
  ) {
    this.#channel = new Channel(options.channelMaxEvents, options.channelMaxBytes);
    this.#loop = new UploadLoop(uploader, spill, options.upload, metrics, log, () => this.#scheduleDrain(), journal);
    this.#batcher = new Batcher(this.#channel, this.#loop, options.batch, journal);
  }

  get events(): number {
    return this.#channel.events;
  }

  get bytes(): number {
    return this.#channel.bytes;
  }

  get uploadQueued(): number {
    return this.#loop.queued;
  }

  get uploadInFlight(): number {
    return this.#loop.inFlight;
  }

  admits(): PushResult {
    return this.#channel.admits();
  }

  tryPush(entry: Entry): PushResult {
    const result = this.#channel.tryPush(entry);
    if (result === 'ok') {
      this.#accepted += entry.count;
      this.#scheduleDrain();
    }
    return result;
  }

  /** Start-up replay of the write-ahead log: events acknowledged by an earlier run, not yet in a batch. */
  restore(entry: Entry): void {
    this.#channel.restore(entry);
    this.#accepted += entry.count;
    this.#scheduleDrain();
  }

  /** Start-up replay of the write-ahead log: a batch cut by an earlier run, uploaded again under its key. */
  resubmit(batch: Batch): void {
    this.#accepted += batch.events;
    this.#loop.submit(batch);
  }

  /** For the DLQ re-uploader: when live uploads were last active, or undefined while busy. */
  idleSince(): number | undefined {
    return this.#loop.idleSince();
  }

  /** For the DLQ re-uploader: false while live batches wait for every upload slot. */
  hasRoom(): boolean {
    return this.#loop.hasRoom();
  }

  /** For the DLQ re-uploader: when S3 last took a live batch. */
  lastStoredAt(): number {
    return this.#loop.lastStoredAt();
  }

  /** Refuses new events, then stores what is held by `deadline`, else spills it; idempotent. */
  close(deadline: Promise<void>): Promise<Summary> {
    this.#closing ??= this.#close(deadline);
    return this.#closing;
  }

  async #close(deadline: Promise<void>): Promise<Summary> {
    this.#channel.close();
    let uploadedInTime = false;
    try {
      uploadedInTime = await Promise.race([this.#uploadAll().then(() => true), deadline.then(() => false)]);
    } catch (err) {
      // A bug: treat it as the deadline, so that what is held still goes to the DLQ.
      this.log.error({ err: (err as Error).message }, 'shutdown: uploading what is held failed; spilling it');
    }
    if (!uploadedInTime) {
      this.log.warn('shutdown deadline: aborting uploads in flight and spilling everything not uploaded to the DLQ');
      let grace: NodeJS.Timeout | undefined;
      try {
        this.#loop.abort();
        // Aborted, the loop has room for everything: every batch goes straight to the spill.
        this.#batcher.flush();
        await Promise.race([this.#loop.onIdle(), new Promise<void>((resolve) => (grace = setTimeout(resolve, SPILL_GRACE_MS)))]);
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'shutdown: spilling what is held failed');
      } finally {
        clearTimeout(grace);
      }
    }
    return this.summary(uploadedInTime);
  }

  /** Where the events accepted so far are now; close() resolves with this once it is done. */
  summary(uploadedInTime = false): Summary {
    const { stored, spilled, dropped } = this.#loop.tallies;
    return { uploadedInTime, accepted: this.#accepted, stored, spilled, dropped, unaccounted: this.#accepted - stored - spilled - dropped };
  }

  async #uploadAll(): Promise<void> {
    for (this.#batcher.flush(); this.#channel.events > 0 || this.#batcher.heldEvents > 0; this.#batcher.flush()) await this.#loop.onRoom();
    await this.#loop.onIdle();
  }

  // One drain per turn of the event loop, however many requests arrived in it.
  #scheduleDrain(): void {
    if (this.#drainScheduled) return;
    this.#drainScheduled = true;
    setImmediate(() => {
      this.#drainScheduled = false;
      this.#batcher.drain();
    });
  }
}
