// Re-upload: put DLQ files back at their original keys, one file at a time, oldest first: in idle
// time, and beside live traffic while live uploads succeed (docs/dlq.md, "Re-upload"). This is the
// scheduling and backoff; the re-upload of a file itself is ./drain.ts.
import type { Logger } from 'pino';
import type { DlqMetrics } from '../metrics/dlq.js';
import { UploadAborted } from '../upload/errors.js';
import type { S3Uploader } from '../upload/s3.js';
import { drainFile } from './drain.js';
import type { DlqStore, QueuedFile } from './store.js';

/** What the re-uploader needs to know of the live upload loop. */
export interface IdleSource {
  /** Time of the last live upload activity, or undefined while batches are queued or in flight. */
  idleSince(): number | undefined;
  /** False while the live upload queue is full: then live batches need every slot. */
  hasRoom(): boolean;
  /** When S3 last took a live batch (0: never). */
  lastStoredAt(): number;
}

// After a failed re-upload, wait 1 s, doubling up to 60 s; a live upload that succeeds resets it.
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 60_000;
const TTL_SWEEP_MS = 30_000;
// A live upload stored this recently means S3 is taking PUTs now, so the DLQ need not wait for idle time.
const LIVE_OK_WINDOW_MS = 5000;

export class Reuploader {
  #timer: NodeJS.Timeout | undefined;
  #sweepTimer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #backoffMs = 0;
  #notBefore = 0;
  #liveOkAt = Number.NEGATIVE_INFINITY;
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
    this.#sweepTimer = setInterval(() => {
      // sweep() never rejects; the catch keeps a bug from becoming an unhandled rejection.
      this.store.sweep().catch((err: Error) => this.log.error({ err }, 'DLQ sweep failed'));
    }, TTL_SWEEP_MS);
  }

  /** Stops taking files and aborts the re-upload in progress (its file stays queued); idempotent. */
  abort(): void {
    this.#stop.abort(new UploadAborted('shutting down'));
    clearInterval(this.#timer);
    clearInterval(this.#sweepTimer);
  }

  /** abort(), then waits until the re-upload in progress has let go of its file. */
  async stop(): Promise<void> {
    this.abort();
    await this.#running;
  }

  /** S3 took a live batch since the last look: it is reachable again, so skip the backoff. */
  #noticeLiveSuccess(): void {
    const storedAt = this.loop.lastStoredAt();
    if (storedAt <= this.#liveOkAt) return;
    this.#liveOkAt = storedAt;
    this.#backoffMs = 0;
    this.#notBefore = 0;
  }

  /**
   * One re-upload at a time, on top of UPLOAD_CONCURRENCY, when the loop has been idle for
   * DLQ_REUPLOAD_IDLE_MS, or when live uploads are succeeding and their queue has room, or while
   * the DLQ is full (ACK_LEVEL=disk, s3: intake is refused until a file leaves; a batch kept
   * retrying keeps the loop busy, and may be one S3 refuses while it would take the files).
   */
  #mayRun(now: number): boolean {
    if (this.store.full) return true;
    const idleSince = this.loop.idleSince();
    if (idleSince !== undefined && now - idleSince >= this.idleMs) return true;
    return now - this.#liveOkAt <= LIVE_OK_WINDOW_MS && this.loop.hasRoom();
  }

  #tick(): void {
    this.#noticeLiveSuccess();
    const now = this.now();
    if (this.#stop.signal.aborted || this.#running !== undefined || now < this.#notBefore || !this.#mayRun(now)) return;
    const file = this.store.oldest(now);
    if (file === undefined) return;
    file.busy = true;
    this.#running = this.#reupload(file).finally(() => {
      file.busy = false;
      this.#running = undefined;
      // Next file straight away while the way stays open; a failure has set a backoff.
      setImmediate(() => this.#tick());
    });
  }

  /** Never rejects: every failure is logged and backs off. */
  async #reupload(file: QueuedFile): Promise<void> {
    const drained = await drainFile(this.store, file, this.uploader, { signal: this.#stop.signal, metrics: this.metrics, log: this.log });
    if (drained.result === 'stored') {
      this.#backoffMs = 0;
      this.#notBefore = 0;
    } else if (drained.result === 'unreadable') {
      // This file alone (EACCES, EIO): it backs off, the files behind it go ahead.
      const backoffMs = this.#fileFailed(file);
      const err = drained.error as NodeJS.ErrnoException;
      this.log.warn({ file: file.name, code: err.code, backoffMs, err }, "DLQ file could not be read; it backs off (backoffMs), other files go ahead; check the volume and the file's owner and mode");
    } else if (drained.result === 'failed') {
      this.#putFailed(file, drained.key, drained.error);
    }
  }

  #putFailed(file: QueuedFile, key: string, err: Error): void {
    this.#noticeLiveSuccess();
    this.#backoffMs = Math.min(BACKOFF_MAX_MS, Math.max(BACKOFF_MIN_MS, this.#backoffMs * 2));
    this.#notBefore = this.now() + jitter(this.#backoffMs);
    // The file may be the problem (S3 refuses it), not S3: it also backs off on its own, counted
    // from the end of the global pause, so that the files behind it go first when the pause ends.
    // If S3 is down they fail too and back off alike.
    const fileBackoffMs = this.#fileFailed(file, this.#notBefore);
    this.log.warn({ file: file.name, key, backoffMs: this.#backoffMs, fileBackoffMs, err }, 'DLQ re-upload failed; file kept');
  }

  /** Backs one file off (1 s doubling to 60 s) from `from`; returns the backoff. */
  #fileFailed(file: QueuedFile, from = this.now()): number {
    file.failures++;
    const backoffMs = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (file.failures - 1));
    file.retryAt = from + jitter(backoffMs);
    return backoffMs;
  }
}

/** Half to all of `ms`, so that tasks that failed together do not retry together. */
function jitter(ms: number): number {
  return ms * (0.5 + Math.random() / 2);
}
