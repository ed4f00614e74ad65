// The write-ahead log: appends, segments and checkpoints; the writing itself is ./writer.ts.
// Format and invariants: ./format.ts. Segments are removed one at a time, oldest first, each
// removal fsynced before the next begins, and none before an earlier one whose removal failed (it
// is tried again first, at the next removal): a cut record may sit in the segment after its
// events, and a later segment gone while an earlier one stayed or came back (a failed unlink, a
// power loss) would have a restart send those events again under new keys.
import type { Logger } from 'pino';
import type { IdemKey, WalRef } from '../channel.js';
import { type Disk, disk as realDisk } from '../disk/disk.js';
import type { WalMetrics } from '../metrics/wal.js';
import type { KeyJournal } from './key-journal.js';
import { CUT, type CutRecord, DONE, encodeEvents, encodeJson, KEY, type PrevCut, PREV_CUTS, segmentHeader, segmentName } from './format.js';
import { GroupWriter, type SegmentState, type Synced } from './writer.js';

export type { SegmentState, Synced } from './writer.js';

export interface WalOptions {
  readonly dir: string;
  readonly maxBytes: number;
  readonly syncIntervalMs: number;
  readonly syncBytes: number;
  readonly segmentBytes: number;
  /** Every file-system call goes through it; the real disk unless a test plays a crash. */
  readonly disk?: Disk;
  /** Where the Idempotency-Keys go to outlive their segments (the server's own WAL; not an adopted one). */
  readonly journal?: KeyJournal;
}

export class WriteAheadLog {
  readonly #segments = new Map<number, SegmentState>();
  readonly #writer: GroupWriter;
  #head: SegmentState;
  #bytes = 0;
  #closed = false;
  /** Segments settled and not yet removed, oldest first; the removal pass in progress; the last stuck one logged. */
  readonly #unremoved: number[] = [];
  #removing: Promise<void> | undefined;
  #reportedStuck: number | undefined;
  /** The `from` and `first` of the last PREV_CUTS cuts without `part` this process wrote, oldest first: the next one's `prev`. */
  readonly #recentStarts: PrevCut[] = [];

  /** `segments`: those found at start, oldest first, with what replay left unsettled in each; `nextSeq` is past all of them. */
  constructor(
    private readonly options: WalOptions,
    readonly logId: string,
    segments: readonly SegmentState[],
    nextSeq: number,
    metrics: WalMetrics,
    private readonly log: Logger,
  ) {
    this.#writer = new GroupWriter(options, metrics, log, () => this.#checkpoint());
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

  /** Why the log stopped writing (a write failed; until a restart), or undefined. */
  get broken(): string | undefined {
    return this.#writer.broken;
  }

  /** Whether a request of `bodyBytes` fits under WAL_MAX_BYTES (and the log still works). */
  hasRoom(bodyBytes: number): boolean {
    return this.#writer.broken === undefined && !this.#closed && this.#bytes + bodyBytes + 64 <= this.options.maxBytes;
  }

  /** Where the next events record goes; append it there before anything else is appended. */
  nextRef(): WalRef {
    const seg = this.#headForAppend();
    return { seg: seg.seq, off: seg.size, base: 0 };
  }

  /**
   * Appends a request's events at `ref` (from nextRef()), and its Idempotency-Key after them if it
   * has one; `synced` is told once they are on disk.
   */
  appendEvents(ref: WalRef, receivedAt: number, spans: readonly number[], body: Buffer, synced: Synced, idem?: IdemKey): void {
    const seg = this.#head;
    if (ref.seg !== seg.seq || ref.off !== seg.size) throw new Error('WAL: appendEvents not at nextRef()');
    const [head, rest] = encodeEvents(receivedAt, spans, body);
    this.#enqueue(seg, head!);
    this.#enqueue(seg, rest!);
    const key = idem && { key: idem.key, hash: idem.hash, bytes: idem.bytes, at: receivedAt };
    if (key !== undefined) this.#enqueue(seg, encodeJson(KEY, key));
    seg.unsettled += spans.length / 2;
    const journal = this.options.journal;
    // Journaled once on disk here, never before: a key journaled for a request whose write then
    // failed, or never returned, would answer its retry as stored. Told before the checkpoint that
    // may remove its segment (GroupWriter: waiters, then `wrote`).
    this.#writer.await(key === undefined || journal === undefined ? synced : (ok) => (ok && journal.add(key), synced(ok)));
  }

  /**
   * Records a cut; resolves (never rejects) once it is on disk, or could not be (the log is broken:
   * the batch is PUT all the same, see docs/durability.md "A failed write"). Returns its segment.
   */
  appendCut(cut: CutRecord): { seg: number; durable: Promise<void> } {
    const seg = this.#headForAppend();
    const recent = this.#recentStarts;
    this.#enqueue(seg, encodeJson(CUT, cut.part !== undefined || recent.length === 0 ? cut : { ...cut, prev: [...recent] }));
    if (cut.part === undefined) {
      recent.push([...cut.from, cut.first]);
      if (recent.length > PREV_CUTS) recent.shift();
    }
    seg.pendingCuts++;
    const durable = new Promise<void>((resolve) => this.#writer.await(() => resolve()));
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
    if (this.#writer.broken === undefined && !this.#closed) {
      // Only spares a restart a redundant PUT: it rides the next write, none of its own.
      this.#enqueue(this.#headForAppend(), encodeJson(DONE, { id }));
      this.#writer.await(undefined);
    }
    this.#checkpoint();
  }

  /**
   * Writes what is queued, then closes; with nothing left unsettled, removes every segment (after a
   * failed write too: every event in them is then stored, spilled or dropped, and a next start
   * replaying them would upload again the batches whose cut records could not be written).
   */
  async close(): Promise<{ unsettled: number; segments: number }> {
    if (!this.#closed) {
      this.#closed = true;
      await this.#writer.close();
      if (this.unsettled === 0) {
        await this.#removing?.catch(() => {}); // a pass near its end could miss what is queued next
        for (const seg of [...this.#segments.values()]) this.#forget(seg);
        await this.#removeQueued().catch(() => {}); // what stays is replayed at the next start, to the same keys
      }
      await this.options.journal?.close();
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
    seg.size += buf.length;
    this.#bytes += buf.length;
    this.#writer.enqueue(seg, buf);
  }

  // Oldest first, and never past a segment with something unsettled: a cut record in a later
  // segment may describe a batch of events in an earlier one.
  #checkpoint(): void {
    for (const seg of this.#segments.values()) {
      if (seg === this.#head || seg.unsettled > 0 || seg.pendingCuts > 0 || seg.written < seg.size) break;
      this.#forget(seg);
    }
    if (this.#unremoved.length === 0 || this.#removing !== undefined) return;
    this.#removeQueued().catch((err: Error) => {
      // Tried again at every checkpoint; said once per segment, not at every write.
      const seq = this.#unremoved[0]!;
      if (seq === this.#reportedStuck) return;
      this.#reportedStuck = seq;
      this.log.error({ segment: segmentName(seq), err }, 'WAL segment could not be removed; its batches are settled; no later segment is removed before it, tried again at each write; a restart meanwhile PUTs them again to the same keys');
    });
  }

  /** Out of the log's bookkeeping, queued for removal. */
  #forget(seg: SegmentState): void {
    this.#segments.delete(seg.seq);
    this.#bytes -= seg.size;
    this.#unremoved.push(seg.seq);
  }

  /** Removes the queued segments in order (see the top), one pass at a time; rejects at the first that stays. */
  #removeQueued(): Promise<void> {
    this.#removing ??= this.#removeInOrder().finally(() => (this.#removing = undefined));
    return this.#removing;
  }

  async #removeInOrder(): Promise<void> {
    const disk = this.options.disk ?? realDisk;
    // No key leaves the log before the journal holds it durably (./key-journal.ts): each round
    // removes only the segments queued before its sync. One queued meanwhile (settled while an
    // unlink was in flight) may hold keys added since: it waits for the next round's sync.
    while (this.#unremoved.length > 0) {
      const queued = this.#unremoved.length;
      await this.options.journal?.sync();
      for (let i = 0; i < queued; i++) {
        await disk.remove(this.options.dir, segmentName(this.#unremoved[0]!));
        this.#unremoved.shift();
      }
    }
  }
}
