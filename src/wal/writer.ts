// Group commit for the write-ahead log: records queued in order, written together to their segment
// files (opened O_DSYNC), and everyone who waits on them told together. Format: ./format.ts.
//
// Invariants:
// - one write at a time, in queue order; a waiter is told only after everything queued before it
//   is on disk (true) or could not be written (false);
// - after a failed write nothing more is written: what that write left may be anywhere on disk,
//   and a restart cuts it as a torn tail. From then on every waiter is told false at once (never
//   on its caller's stack) and what is queued is dropped: nobody waits on a broken log.
import { constants as fsConstants } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { type Disk, disk as realDisk } from '../disk/disk.js';
import type { WalMetrics } from '../metrics/wal.js';
import { segmentName } from './format.js';

// O_DSYNC: each write returns once its data (and the size that reaches it) is on disk, as
// write + fdatasync would, in one trip to libuv's thread pool instead of two.
const WRITE_FLAGS = fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_DSYNC;

/** A segment's bookkeeping: its size as appended (written or queued), and what in it is not settled. */
export interface SegmentState {
  readonly seq: number;
  size: number;
  written: number;
  unsettled: number;
  pendingCuts: number;
}

/** Told once the record is on disk (true) or could not be written (false). */
export type Synced = (ok: boolean) => void;

export interface WriterOptions {
  readonly dir: string;
  readonly syncIntervalMs: number;
  readonly syncBytes: number;
  /** Every file-system call goes through it; the real disk unless a test plays a crash. */
  readonly disk?: Disk;
}

export class GroupWriter {
  #queue: { seg: SegmentState; buf: Buffer }[] = [];
  #queuedBytes = 0;
  #waiters: Synced[] = [];
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;
  #open: { seg: SegmentState; handle: FileHandle } | undefined;
  #broken: string | undefined;
  #closed = false;

  /** `wrote` is called after each write (the log then checkpoints). */
  constructor(
    private readonly options: WriterOptions,
    private readonly metrics: WalMetrics,
    private readonly log: Logger,
    private readonly wrote: () => void,
  ) {}

  /** Why writes stopped (a write failed), or undefined. */
  get broken(): string | undefined {
    return this.#broken;
  }

  /** Queues bytes at the end of `seg` (whose `size` the caller has already counted them in). */
  enqueue(seg: SegmentState, buf: Buffer): void {
    this.#queue.push({ seg, buf });
    this.#queuedBytes += buf.length;
  }

  /** `synced` is told once everything queued so far is written; a write is scheduled. */
  await(synced: Synced | undefined): void {
    if (synced !== undefined) this.#waiters.push(synced);
    if (this.#broken !== undefined) return this.#refuseAll();
    this.#schedule();
  }

  /** Writes what is queued, then closes the open segment file. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    // #flushing is cleared when its write ends, before `await` resumes here: each turn waits on a new write.
    for (;;) {
      if (this.#flushing !== undefined) await this.#flushing;
      else if (this.#queue.length > 0 && this.#broken === undefined) this.#startFlush();
      else break;
    }
    this.#refuseAll();
    await this.#open?.handle.close().catch(() => {});
    this.#open = undefined;
  }

  // The first record starts a window of WAL_SYNC_INTERVAL_MS (or less, once WAL_SYNC_BYTES are
  // queued); every record queued by the time the write starts shares it.
  #schedule(): void {
    if (this.#flushing !== undefined || this.#closed) return; // the write in progress starts the next one when done
    if (this.#queuedBytes >= this.options.syncBytes || this.options.syncIntervalMs === 0) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#startFlush();
    } else {
      this.#timer ??= setTimeout(() => {
        this.#timer = undefined;
        if (this.#flushing === undefined) this.#startFlush();
      }, this.options.syncIntervalMs);
    }
  }

  // One write at a time: #flushing is this write until it ends, then the next one (or nothing).
  #startFlush(): void {
    const flushing: Promise<void> = this.#flush().finally(() => {
      if (this.#flushing !== flushing) return;
      this.#flushing = undefined;
      // What arrived during this write has waited a whole write already: its group goes out at once.
      if (this.#queue.length > 0 && !this.#closed && this.#broken === undefined) {
        clearTimeout(this.#timer);
        this.#timer = undefined;
        this.#startFlush();
      }
    });
    this.#flushing = flushing;
  }

  // The log is broken (or closed): drop what is queued, tell every waiter false, on a later tick.
  #refuseAll(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    this.#queue = [];
    this.#queuedBytes = 0;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (waiters.length > 0) queueMicrotask(() => waiters.forEach((synced) => synced(false)));
  }

  async #flush(): Promise<void> {
    const queue = this.#queue;
    const waiters = this.#waiters;
    this.#queue = [];
    this.#waiters = [];
    this.#queuedBytes = 0;
    const started = performance.now();
    let ok = this.#broken === undefined;
    try {
      for (let i = 0; ok && i < queue.length; ) {
        const seg = queue[i]!.seg;
        const bufs: Buffer[] = [];
        let bytes = 0;
        for (; i < queue.length && queue[i]!.seg === seg; i++) {
          bufs.push(queue[i]!.buf);
          bytes += queue[i]!.buf.length;
        }
        const handle = await this.#handleFor(seg);
        let { bytesWritten } = await handle.writev(bufs);
        // libuv writes the whole vector unless the disk is full or failing; finish a short write (O_APPEND).
        if (bytesWritten < bytes) {
          const all = Buffer.concat(bufs);
          while (bytesWritten < bytes) bytesWritten += (await handle.write(all, bytesWritten, bytes - bytesWritten)).bytesWritten;
        }
        seg.written += bytes;
      }
    } catch (err) {
      ok = false;
      this.#broken = `${(err as NodeJS.ErrnoException).code ?? ''} ${(err as Error).message}`.trim();
      this.metrics.writeFailures.inc();
      this.log.error({ dir: this.options.dir, err }, 'WAL write failed; refusing events (503 not_stored) until restarted; events already accepted are still uploaded; check WAL_DIR and its volume');
    }
    if (waiters.length > 0) {
      this.metrics.fsyncSeconds.observe((performance.now() - started) / 1000);
      this.metrics.groupSize.observe(waiters.length);
    }
    for (const synced of waiters) synced(ok);
    if (!ok) this.#refuseAll();
    this.wrote();
  }

  async #handleFor(seg: SegmentState): Promise<FileHandle> {
    if (this.#open?.seg === seg) return this.#open.handle;
    const previous = this.#open;
    this.#open = undefined;
    await previous?.handle.close().catch(() => {});
    const disk = this.options.disk ?? realDisk;
    // Retried while file descriptors are short: a failure here would stop the log until a restart.
    const handle = await disk.open(path.join(this.options.dir, segmentName(seg.seq)), WRITE_FLAGS, 0o644);
    this.#open = { seg, handle };
    // The new name must survive a crash as surely as the records in it.
    await disk.syncDir(this.options.dir);
    return handle;
  }
}
