// Idle-time re-upload: when the upload loop has had nothing to do for DLQ_REUPLOAD_IDLE_MS, put
// the oldest DLQ file back to its original key, one file at a time; live traffic comes first.
import type { Logger } from 'pino';
import type { DlqMetrics } from '../metrics/dlq.js';
import { type S3Uploader, UploadAborted } from '../upload/s3.js';
import type { DlqStore, QueuedFile } from './store.js';

export interface IdleSource {
  /** Time of the last live upload activity, or undefined while batches are queued or in flight. */
  idleSince(): number | undefined;
  /** When S3 last took a live batch (0: never). */
  lastStoredAt(): number;
}

// After a failed re-upload, wait 1 s, doubling up to 60 s; a live upload that succeeds resets it.
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 60_000;
const TTL_SWEEP_MS = 30_000;

export class Reuploader {
  #timer: NodeJS.Timeout | undefined;
  #sweepTimer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #backoffMs = 0;
  #notBefore = 0;
  #failedAt = 0;
  readonly #stop = new AbortController();

  constructor(
    private readonly store: DlqStore,
    private readonly uploader: S3Uploader,
    private readonly loop: IdleSource,
    private readonly idleMs: number,
    private readonly metrics: DlqMetrics,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {}

  start(): void {
    this.#timer = setInterval(() => this.#tick(), Math.max(50, Math.min(this.idleMs, 1000) / 4));
    this.#sweepTimer = setInterval(() => void this.store.sweep().catch((err: Error) => this.log.error({ err: err.message }, 'DLQ sweep failed')), TTL_SWEEP_MS);
  }

  /** Stops taking files and aborts the re-upload in progress (its file stays queued). */
  async stop(): Promise<void> {
    this.#stop.abort(new UploadAborted('shutting down'));
    clearInterval(this.#timer);
    clearInterval(this.#sweepTimer);
    await this.#running;
  }

  #tick(): void {
    // S3 took a live batch since the last failure: it is reachable again, so skip the backoff.
    if (this.loop.lastStoredAt() > this.#failedAt) this.#notBefore = 0;
    if (this.#stop.signal.aborted || this.#running !== undefined || this.now() < this.#notBefore) return;
    const idleSince = this.loop.idleSince();
    if (idleSince === undefined || this.now() - idleSince < this.idleMs) return;
    const file = this.store.oldest();
    if (file === undefined) return;
    file.busy = true;
    this.#running = this.#reupload(file)
      .catch((err: Error) => this.log.error({ file: file.name, err: err.message }, 'DLQ re-upload could not read its file'))
      .finally(() => {
        file.busy = false;
        this.#running = undefined;
        // Next file straight away while the loop stays idle; a failure has set a backoff.
        setImmediate(() => this.#tick());
      });
  }

  async #reupload(file: QueuedFile): Promise<void> {
    const object = await this.store.read(file);
    if (object === undefined) return;
    try {
      await this.uploader.put({ key: object.meta.key, body: object.gzip, events: object.meta.events }, this.#stop.signal);
    } catch (err) {
      if (this.#stop.signal.aborted) return;
      if (this.loop.lastStoredAt() > this.#failedAt) this.#backoffMs = 0;
      this.#backoffMs = Math.min(BACKOFF_MAX_MS, Math.max(BACKOFF_MIN_MS, this.#backoffMs * 2));
      this.#failedAt = Date.now();
      this.#notBefore = this.now() + this.#backoffMs * (0.5 + Math.random() / 2);
      this.log.warn({ file: file.name, key: object.meta.key, backoffMs: this.#backoffMs, err: (err as Error).message }, 'DLQ re-upload failed; file kept');
      return;
    }
    await this.store.delete(file, 'reuploaded');
    this.metrics.eventsReuploaded.inc(object.meta.events);
    this.log.info({ key: object.meta.key, events: object.meta.events, file: file.name }, `DLQ → RAW success: ${object.meta.key} events=${object.meta.events}`);
    this.#backoffMs = 0;
    this.#notBefore = 0;
  }
}
