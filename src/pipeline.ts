// Owns the data path behind the front: channel -> batcher -> upload loop -> spill to the DLQ, and
// each event's life on it: accepted -> (logged) -> batched -> stored | spilled | dropped.
//
// Invariants:
// - the front only asks and hands over whole requests (Intake.accept); the ack level (src/acks.ts)
//   decides when the answer goes, and is told of every cut and settled batch by the pipeline alone;
// - cutting, encoding and uploading run later, off the request's stack (a drain is scheduled with
//   setImmediate, never run inside accept);
// - every accepted event ends up stored, spilled or dropped, settled once per batch here, where
//   the tallies are kept: close() reports them without reading metrics back;
// - close(deadline) is idempotent: it uploads what is held until the deadline, then aborts the
//   uploads in flight and spills the rest, waiting for the spill at most SPILL_GRACE_MS more.
import type { Logger } from 'pino';
import type { Acks, Answer, Outcome, Refusal, Reply } from './acks.js';
import { Channel, type Entry, type PushResult } from './channel.js';
import type { UploadMetrics } from './metrics/upload.js';
import { type Batch, Batcher, type BatcherOptions } from './upload/batcher.js';
import { type Settled, type Spill, UploadLoop, type UploadLoopOptions } from './upload/loop.js';
import type { S3Uploader } from './upload/s3.js';

/** What the front sees of the pipeline (or, in a worker thread, of the main thread's): it asks, then hands whole requests over. */
export interface Intake {
  /** What accept() would answer now for the smallest request: the front asks before parsing, so a refusal costs no parse. */
  admits(): 'ok' | Refusal;
  /**
   * Takes a request whole or not at all: its outcome now, or 'pending' when `answer` will tell it
   * (once, later). A request with an Idempotency-Key may be given a KeyReply instead (src/idempotency.ts).
   */
  accept(entry: Entry, answer: (reply: Reply) => void): Reply | 'pending';
  readonly events: number;
  readonly bytes: number;
}

/** What a pipeline is built from besides its options. */
export interface PipelineParts {
  readonly uploader: S3Uploader;
  /** Where a batch goes when its last upload attempt failed: the DLQ. */
  readonly spill: Spill;
  readonly acks: Acks;
  readonly metrics: UploadMetrics;
  readonly log: Logger;
}

export interface PipelineOptions {
  readonly channelMaxEvents: number;
  readonly channelMaxBytes: number;
  readonly batch: BatcherOptions;
  readonly upload: UploadLoopOptions;
}

/**
 * Where every accepted event went; `kept`: in the WAL for the next start (ACK_LEVEL=disk, neither
 * S3 nor the DLQ took them); `unaccounted` is always 0 unless the spill outlived its grace.
 */
export interface Summary {
  readonly uploadedInTime: boolean;
  readonly accepted: number;
  readonly stored: number;
  readonly spilled: number;
  readonly dropped: number;
  readonly kept: number;
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
  readonly #acks: Acks;
  readonly #log: Logger;
  readonly #tallies: Record<Settled, number> = { stored: 0, spilled: 0, dropped: 0, kept: 0 };
  readonly #spill: Spill;
  #accepted = 0;
  #drainScheduled = false;
  #closing: Promise<Summary> | undefined;

  constructor(options: PipelineOptions, { uploader, spill, acks, metrics, log }: PipelineParts) {
    this.#acks = acks;
    this.#spill = spill;
    this.#log = log;
    this.#channel = new Channel(options.channelMaxEvents, options.channelMaxBytes);
    this.#loop = new UploadLoop(uploader, spill, options.upload, metrics, log, () => this.#scheduleDrain(), (batch, outcome) => this.#settle(batch, outcome));
    this.#batcher = new Batcher(this.#channel, this.#loop, options.batch, acks, metrics);
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

  admits(): 'ok' | Refusal {
    const admitted = this.#channel.admits();
    if (admitted !== 'ok') return admitted;
    const acks = this.#acks.admits();
    return acks === 'ok' && this.#spill.full ? 'dlq_full' : acks;
  }

  accept(entry: Entry, answer: Answer): Outcome | 'pending' {
    if (this.#spill.full) return 'dlq_full';
    return this.#acks.accept(entry, this.#push, answer);
  }

  readonly #push = (entry: Entry): PushResult => {
    const result = this.#channel.tryPush(entry);
    if (result === 'ok') {
      this.#accepted += entry.count;
      this.#scheduleDrain();
    }
    return result;
  };

  #settle(batch: Batch, outcome: Settled): void {
    this.#tallies[outcome] += batch.events;
    this.#acks.settled(batch, outcome);
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
      this.#log.error({ err }, 'shutdown: uploading what is held failed; spilling it');
    }
    if (!uploadedInTime) {
      this.#log.warn('shutdown deadline: aborting uploads in flight and spilling everything not uploaded to the DLQ');
      let grace: NodeJS.Timeout | undefined;
      try {
        this.#loop.abort();
        // Aborted, the loop has room for everything: every batch goes straight to the spill.
        this.#batcher.flush();
        await Promise.race([this.#loop.onIdle(), new Promise<void>((resolve) => (grace = setTimeout(resolve, SPILL_GRACE_MS)))]);
      } catch (err) {
        this.#log.error({ err }, 'shutdown: spilling what is held failed');
      } finally {
        clearTimeout(grace);
      }
    }
    return this.summary(uploadedInTime);
  }

  /** Where the events accepted so far are now; close() resolves with this once it is done. */
  summary(uploadedInTime = false): Summary {
    const { stored, spilled, dropped, kept } = this.#tallies;
    return { uploadedInTime, accepted: this.#accepted, stored, spilled, dropped, kept, unaccounted: this.#accepted - stored - spilled - dropped - kept };
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
