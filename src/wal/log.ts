// The write-ahead log's writer: group commit, segments, checkpoints. Format and invariants: ./format.ts.
import { constants as fsConstants } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { WalRef } from '../channel.js';
import { syncDir } from '../dlq/disk.js';
import type { WalMetrics } from '../metrics/wal.js';
import { CUT, type CutRecord, DONE, encodeEvents, encodeJson, segmentHeader, segmentName } from './format.js';

// O_DSYNC: each write returns once its data (and the size that reaches it) is on disk, as
// write + fdatasync would, in one trip to libuv's thread pool instead of two.
const WRITE_FLAGS = fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_DSYNC;

export interface WalOptions {
  readonly dir: string;
  readonly maxBytes: number;
  readonly syncIntervalMs: number;
  readonly syncBytes: number;
  readonly segmentBytes: number;
}

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

export class WriteAheadLog {
  readonly #segments = new Map<number, SegmentState>();
  #head: SegmentState;
  #bytes = 0;
  #queue: { seg: SegmentState; buf: Buffer }[] = [];
  #queuedBytes = 0;
  #waiters: Synced[] = [];
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;
  #open: { seg: SegmentState; handle: FileHandle } | undefined;
  #broken: string | undefined;
  #closed = false;

  /** `segments`: those found at start, oldest first, with what replay left unsettled in each; `nextSeq` is past all of them. */
  constructor(
    private readonly options: WalOptions,
    readonly logId: string,
    segments: readonly SegmentState[],
    nextSeq: number,
    private readonly metrics: WalMetrics,
    private readonly log: Logger,
  ) {
    for (const seg of segments) {
      this.#segments.set(seg.seq, seg);
      this.#bytes += seg.size;
    }
    this.#head = this.#newSegment(nextSeq);
  }

  get bytes(): number {
    return this.#bytes;
  }

  get segments(): number {
    return this.#segments.size;
  }

  /** Events appended and not yet settled. */
  get unsettled(): number {
    let n = 0;
    for (const seg of this.#segments.values()) n += seg.unsettled;
    return n;
  }

  /** Why the log refuses writes (a write or fsync failed), or undefined. */
  get broken(): string | undefined {
    return this.#broken;
  }

  /** Whether a request of `bodyBytes` fits under WAL_MAX_BYTES (and the log still works). */
  hasRoom(bodyBytes: number): boolean {
    return this.#broken === undefined && !this.#closed && this.#bytes + bodyBytes + 64 <= this.options.maxBytes;
  }

  /** Where the next events record goes; append it there before anything else is appended. */
  nextRef(): WalRef {
    const seg = this.#headForAppend();
    return { seg: seg.seq, off: seg.size, base: 0 };
  }

  /** Appends a request's events at `ref` (from nextRef()); `synced` is told once they are on disk. */
  appendEvents(ref: WalRef, receivedAt: number, spans: readonly number[], body: Buffer, synced: Synced): void {
    const seg = this.#head;
    if (ref.seg !== seg.seq || ref.off !== seg.size) throw new Error('WAL: appendEvents not at nextRef()');
    const [head, rest] = encodeEvents(receivedAt, spans, body);
    this.#enqueue(seg, head!);
    this.#enqueue(seg, rest!);
    seg.unsettled += spans.length / 2;
    this.#waiters.push(synced);
    this.#schedule();
  }

  /** Records a cut; resolves (never rejects) once it is on disk, or could not be. Returns the segment it is in. */
  appendCut(cut: CutRecord): { seg: number; durable: Promise<void> } {
    const seg = this.#headForAppend();
    this.#enqueue(seg, encodeJson(CUT, cut));
    seg.pendingCuts++;
    const durable = new Promise<void>((resolve) => this.#waiters.push(() => resolve()));
    this.#schedule();
    return { seg: seg.seq, durable };
  }

  /** A batch is settled: `events` per segment of its events, and the segment of its cut record. */
  settle(id: string, events: ReadonlyMap<number, number>, cutSeg: number | undefined): void {
    for (const [seq, n] of events) {
      const seg = this.#segments.get(seq);
      if (seg !== undefined) seg.unsettled -= n;
    }
    if (cutSeg !== undefined) {
      const seg = this.#segments.get(cutSeg);
      if (seg !== undefined) seg.pendingCuts--;
    }
    if (this.#broken === undefined && !this.#closed) {
      // Only spares a restart a redundant PUT: it rides the next fsync, none of its own.
      this.#enqueue(this.#headForAppend(), encodeJson(DONE, { id }));
      this.#schedule();
    }
    this.#checkpoint();
  }

  /** Writes what is queued, then closes; with nothing left unsettled, removes every segment. */
  async close(): Promise<{ unsettled: number; segments: number }> {
    if (!this.#closed) {
      this.#closed = true;
      clearTimeout(this.#timer);
      for (;;) {
        if (this.#flushing !== undefined) await this.#flushing;
        else if (this.#queue.length > 0 && this.#broken === undefined) await (this.#flushing = this.#flush());
        else break;
      }
      await this.#open?.handle.close().catch(() => {});
      this.#open = undefined;
      const unsettled = this.unsettled;
      if (unsettled === 0 && this.#broken === undefined) {
        for (const seg of [...this.#segments.values()]) await this.#remove(seg);
      }
    }
    return { unsettled: this.unsettled, segments: this.#segments.size };
  }

  // The segment being written is never deleted: past a quarter of WAL_MAX_BYTES it gives way to
  // a new one whatever WAL_SEGMENT_BYTES says, so that settled events do not keep the log full.
  #headForAppend(): SegmentState {
    if (this.#head.size >= Math.min(this.options.segmentBytes, this.options.maxBytes / 4)) this.#head = this.#newSegment(this.#head.seq + 1);
    return this.#head;
  }

  #newSegment(seq: number): SegmentState {
    const seg: SegmentState = { seq, size: 0, written: 0, unsettled: 0, pendingCuts: 0 };
    this.#segments.set(seq, seg);
    this.#enqueue(seg, segmentHeader(this.logId));
    return seg;
  }

  #enqueue(seg: SegmentState, buf: Buffer): void {
    this.#queue.push({ seg, buf });
    seg.size += buf.length;
    this.#bytes += buf.length;
    this.#queuedBytes += buf.length;
  }

  // Group commit: the first record starts a window of WAL_SYNC_INTERVAL_MS (or less, once
  // WAL_SYNC_BYTES are queued); every record queued by the time the write starts shares its fsync.
  #schedule(): void {
    if (this.#flushing !== undefined) return; // the flush in progress starts the next one when done
    if (this.#queuedBytes >= this.options.syncBytes || this.options.syncIntervalMs === 0) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#flushing = this.#flush();
    } else {
      this.#timer ??= setTimeout(() => {
        this.#timer = undefined;
        this.#flushing ??= this.#flush();
      }, this.options.syncIntervalMs);
    }
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
      // What was written since the last fsync may be anywhere on disk now: nothing more goes after
      // it (a restart cuts it as a torn tail). Every request from now on is refused.
      this.#broken = `${(err as NodeJS.ErrnoException).code ?? ''} ${(err as Error).message}`.trim();
      this.metrics.writeFailures.inc();
      this.log.error({ dir: this.options.dir, err: this.#broken }, `WAL write failed: ${this.#broken}; refusing events (503) until restarted; check WAL_DIR and its volume`);
    }
    if (waiters.length > 0) {
      this.metrics.fsyncSeconds.observe((performance.now() - started) / 1000);
      this.metrics.groupSize.observe(waiters.length);
    }
    this.#flushing = undefined;
    for (const synced of waiters) synced(ok);
    // What arrived during this write has waited a whole fsync already: its group is written at once.
    if (this.#queue.length > 0 && !this.#closed) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#flushing = this.#flush();
    }
    this.#checkpoint();
  }

  async #handleFor(seg: SegmentState): Promise<FileHandle> {
    if (this.#open?.seg === seg) return this.#open.handle;
    const previous = this.#open;
    this.#open = undefined;
    await previous?.handle.close().catch(() => {});
    const handle = await fs.open(path.join(this.options.dir, segmentName(seg.seq)), WRITE_FLAGS, 0o644);
    this.#open = { seg, handle };
    // The new name must survive a crash as surely as the records in it.
    await syncDir(this.options.dir);
    return handle;
  }

  // Oldest first, and never past a segment with something unsettled: a cut record in a later
  // segment may describe a batch of events in an earlier one.
  #checkpoint(): void {
    for (const seg of this.#segments.values()) {
      if (seg === this.#head || seg.unsettled > 0 || seg.pendingCuts > 0 || seg.written < seg.size) return;
      this.#segments.delete(seg.seq);
      this.#bytes -= seg.size;
      fs.rm(path.join(this.options.dir, segmentName(seg.seq)), { force: true }).catch((err: Error) => {
        this.log.error({ segment: segmentName(seg.seq), err: err.message }, 'WAL segment could not be removed; its batches are settled; a restart PUTs them again to the same keys');
      });
    }
  }

  async #remove(seg: SegmentState): Promise<void> {
    this.#segments.delete(seg.seq);
    this.#bytes -= seg.size;
    await fs.rm(path.join(this.options.dir, segmentName(seg.seq)), { force: true }).catch(() => {});
  }
}
