// ACK_LEVEL=disk and s3: the intake that answers once a request is durable, and the journal that
// tells the write-ahead log (and the waiting answers) about cuts and settled batches.
//
// With ACK_LEVEL=memory neither exists: the front pushes to the pipeline and answers at once.
import type { AckWaiter, Entry, Intake, PushResult } from '../channel.js';
import type { Pipeline } from '../pipeline.js';
import type { Batch, Segment } from '../upload/batcher.js';
import type { Journal, Settled } from '../upload/journal.js';
import type { WriteAheadLog } from './log.js';

/** How a request ended for the client: `synced` in the WAL (disk), or its events stored, spilled or dropped (s3); `failed`: the WAL write failed. */
export type AckOutcome = Settled | 'synced' | 'failed';

/** What the front needs of an intake that answers later. */
export interface AckedIntake extends Intake {
  /**
   * Like tryPush; on 'ok', `answer` is called once, later, never on the caller's stack. A worker
   * thread's intake (src/ingest/worker.ts) answers 'ok' at once and tryPush's own answer later.
   */
  pushAcked(entry: Entry, answer: (outcome: AckOutcome | PushResult) => void): PushResult;
}

export class Acks implements Journal, AckedIntake {
  readonly #cutSegs: Map<string, number>;
  #pipeline: Pipeline | undefined;

  /**
   * `wal`: ACK_LEVEL=disk; without it, ACK_LEVEL=s3. `cutSegs`: where recovered batches' cuts are.
   * `fresh`: on a shared root, whether this instance's lease allows it to acknowledge.
   */
  constructor(
    private readonly wal: WriteAheadLog | undefined,
    private readonly instanceId: string,
    cutSegs = new Map<string, number>(),
    private readonly fresh: () => boolean = () => true,
  ) {
    this.#cutSegs = cutSegs;
  }

  /** The pipeline is built with this journal, so it comes second. */
  feed(pipeline: Pipeline): void {
    this.#pipeline = pipeline;
  }

  get events(): number {
    return this.#pipeline!.events;
  }

  get bytes(): number {
    return this.#pipeline!.bytes;
  }

  /** 'not_stored' once a WAL write failed (the log takes nothing more until a restart), 'full' when it is at WAL_MAX_BYTES. */
  admits(): PushResult {
    const admitted = this.#pipeline!.admits();
    if (admitted !== 'ok' || this.wal === undefined) return admitted;
    if (this.wal.broken !== undefined) return 'not_stored';
    return this.wal.hasRoom(0) ? 'ok' : 'full';
  }

  tryPush(entry: Entry): PushResult {
    return this.#pipeline!.tryPush(entry);
  }

  pushAcked(entry: Entry, answer: (outcome: AckOutcome) => void): PushResult {
    const wal = this.wal;
    if (wal === undefined) {
      const ack: AckWaiter = { pending: entry.count, spilled: false, dropped: false, done: answer };
      return this.#pipeline!.tryPush({ receivedAt: entry.receivedAt, body: entry.body, spans: entry.spans, count: entry.count, bytes: entry.bytes, ack });
    }
    if (!wal.hasRoom(entry.body.length + 8 * entry.count)) {
      const admitted = this.admits();
      return admitted === 'ok' ? 'full' : admitted;
    }
    // The channel's order is the log's: both happen here, in one synchronous step.
    const ref = wal.nextRef();
    const pushed = this.#pipeline!.tryPush({ receivedAt: entry.receivedAt, body: entry.body, spans: entry.spans, count: entry.count, bytes: entry.bytes, wal: ref });
    if (pushed === 'ok') wal.appendEvents(ref, entry.receivedAt, entry.spans, entry.body, (ok) => answer(ok && this.fresh() ? 'synced' : 'failed'));
    return pushed;
  }

  /** Journal: `{first}-{instance}-{log id}-{segment}-{offset}-{event}` of the first event, all but the first in base 36. */
  batchId(first: Segment, firstReceivedAt: number): string | undefined {
    const ref = first.entry.wal;
    if (ref === undefined || this.wal === undefined) return undefined;
    return `${firstReceivedAt}-${this.instanceId}-${this.wal.logId}-${ref.seg.toString(36)}-${ref.off.toString(36)}-${(ref.base + first.from).toString(36)}`;
  }

  /** Journal */
  cut(batch: Batch): Promise<void> | undefined {
    const first = batch.segments[0]!;
    const last = batch.segments.at(-1)!;
    if (this.wal === undefined || first.entry.wal === undefined || last.entry.wal === undefined) return undefined;
    const a = first.entry.wal;
    const b = last.entry.wal;
    const { seg, durable } = this.wal.appendCut({
      id: batch.id,
      key: batch.key,
      events: batch.events,
      first: batch.firstReceivedAt,
      last: batch.lastReceivedAt,
      from: [a.seg, a.off, a.base + first.from],
      to: [b.seg, b.off, b.base + last.to],
    });
    this.#cutSegs.set(batch.id, seg);
    return durable;
  }

  /** Journal */
  settled(batch: Batch, outcome: Settled): void {
    if (this.wal !== undefined) {
      const bySeg = new Map<number, number>();
      for (const { entry, from, to } of batch.segments) {
        if (entry.wal !== undefined) bySeg.set(entry.wal.seg, (bySeg.get(entry.wal.seg) ?? 0) + to - from);
      }
      const cutSeg = this.#cutSegs.get(batch.id);
      this.#cutSegs.delete(batch.id);
      this.wal.settle(batch.id, bySeg, cutSeg);
      return;
    }
    for (const { entry, from, to } of batch.segments) {
      const ack = entry.ack;
      if (ack === undefined) continue;
      ack.pending -= to - from;
      if (outcome === 'spilled') ack.spilled = true;
      else if (outcome === 'dropped') ack.dropped = true;
      if (ack.pending === 0) ack.done(ack.dropped ? 'dropped' : ack.spilled ? 'spilled' : 'stored');
    }
  }
}
