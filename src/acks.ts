// The ack level (ACK_LEVEL), chosen once at start-up: when a request is answered, and what the
// durability layer hears of each batch. The pipeline calls it at each step of an event's life
// (accepted, batched, settled); nothing else does, so the front knows nothing of the WAL or the DLQ.
//
// - memory: answered once the channel took the request;
// - disk: once the request's record in the write-ahead log is fsynced (src/wal/);
// - s3: once every event of the request is stored in S3, or spilled to the DLQ.
import type { AckWaiter, Entry, PushResult } from './channel.js';
import type { Batch, CutRecorder, Segment } from './upload/batcher.js';
import type { Settled } from './upload/loop.js';
import type { CutRecord } from './wal/format.js';
import type { WriteAheadLog } from './wal/log.js';

/**
 * Why a request is refused: the channel is full or closed, the WAL cannot take it (not_stored), or
 * the DLQ is full at ACK_LEVEL=disk or s3 (dlq_full: nothing more can be kept if S3 fails).
 */
export type Refusal = 'full' | 'closed' | 'not_stored' | 'dlq_full';

/**
 * What the client is told: in memory or the WAL (accepted), in S3 or the DLQ (stored, spilled: s3),
 * not known by ACK_TIMEOUT_MS (unconfirmed: s3; the events may still be stored), or refused.
 */
export type Outcome = 'accepted' | 'stored' | 'spilled' | 'unconfirmed' | Refusal;

/**
 * What a request with an Idempotency-Key may be told instead of an outcome (src/idempotency.ts):
 * a repeat of an accepted request is given that request's answer again (replayed_*: a 202, nothing
 * stored); one whose first request is still unanswered is told `in_progress` (409); one whose
 * body differs from the first's is told `key_reused` (422).
 */
export type KeyReply = 'replayed_accepted' | 'replayed_stored' | 'replayed_spilled' | 'in_progress' | 'key_reused';

/** What the front is told of a request. */
export type Reply = Outcome | KeyReply;

/** Whether an outcome tells the client its events are taken: a 202 (the others are 503s, and replays store nothing). */
export const isReceipt = (outcome: Reply): boolean => outcome === 'accepted' || outcome === 'stored' || outcome === 'spilled';

/** Called once with a request's outcome, later, never on the stack of the call that took the request. */
export type Answer = (outcome: Outcome) => void;

/** The channel's push: called at most once per request, by the ack level, at the moment it chooses. */
export type Push = (entry: Entry) => PushResult;

export interface Acks extends CutRecorder {
  /** Before the channel is asked: 'ok', or why this level refuses any request now. */
  admits(): 'ok' | Refusal;
  /** Pushes `entry` (once, through `push`); its outcome now, or 'pending' when `answer` will tell it. */
  accept(entry: Entry, push: Push, answer: Answer): Outcome | 'pending';
  /** Once per batch, from the pipeline: where its events ended up. */
  settled(batch: Batch, outcome: Settled): void;
}

/** ACK_LEVEL=memory: the answer is the push's. */
export const memoryAcks: Acks = {
  admits: () => 'ok',
  accept: (entry, push) => {
    const pushed = push(entry);
    return pushed === 'ok' ? 'accepted' : pushed;
  },
  batchId: () => undefined,
  cut: () => undefined,
  settled: () => {},
};

/**
 * ACK_LEVEL=s3: each request waits for the settling of every batch that holds some of its events,
 * or for ACK_TIMEOUT_MS, whichever comes first; it is answered once either way.
 */
export class S3Acks implements Acks {
  // Requests waiting, with their deadlines: in acceptance order, so also in deadline order.
  readonly #waiting = new Map<AckWaiter, number>();
  #timer: NodeJS.Timeout | undefined;

  /** `now`: a monotonic clock in ms. */
  constructor(
    private readonly timeoutMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  admits(): 'ok' {
    return 'ok';
  }

  accept(entry: Entry, push: Push, answer: Answer): Outcome | 'pending' {
    const ack: AckWaiter = { pending: entry.count, spilled: false, dropped: false, done: answer, late: entry.late };
    const pushed = push({ ...entry, ack });
    if (pushed !== 'ok') return pushed;
    this.#waiting.set(ack, this.now() + this.timeoutMs);
    // One timer for all: it answers every request past its deadline, then waits for the next one's.
    this.#timer ??= setTimeout(this.#expire, this.timeoutMs).unref();
    return 'pending';
  }

  readonly #expire = (): void => {
    this.#timer = undefined;
    const now = this.now();
    for (const [ack, deadline] of this.#waiting) {
      if (deadline > now) {
        this.#timer = setTimeout(this.#expire, deadline - now).unref();
        return;
      }
      this.#waiting.delete(ack);
      ack.done('unconfirmed');
    }
  };

  batchId(): undefined {
    return undefined;
  }

  cut(): undefined {
    return undefined;
  }

  /** A request with an event dropped is answered not_stored: the client may retry it (duplicates, never loss). */
  settled(batch: Batch, outcome: Settled): void {
    for (const { entry, from, to } of batch.segments) {
      const ack = entry.ack!;
      ack.pending -= to - from;
      if (outcome === 'spilled') ack.spilled = true;
      else if (outcome === 'dropped') ack.dropped = true;
      if (ack.pending > 0) continue;
      const final = ack.dropped ? 'not_stored' : ack.spilled ? 'spilled' : 'stored';
      // Not waiting any more: answered unconfirmed at its deadline; its Idempotency-Key hears now.
      if (this.#waiting.delete(ack)) ack.done(final);
      else ack.late?.(final);
    }
  }
}

/**
 * ACK_LEVEL=disk: a request is pushed and logged in one synchronous step (so the channel's order
 * is the log's), and answered once its record is fsynced. Cuts and settled batches are logged too,
 * so that a restart re-sends exactly what was not settled, under the same keys.
 */
export class DiskAcks implements Acks {
  /**
   * `instanceId`: whose batch ids these are (an adopted WAL keeps its dead instance's).
   * `cutSegs`: where recovered batches' cuts are. `fresh`: on a shared root, whether this
   * instance's lease allows it to acknowledge (fencing: src/wal/lease.ts).
   */
  constructor(
    private readonly wal: WriteAheadLog,
    private readonly instanceId: string,
    private readonly cutSegs: Map<string, number>,
    private readonly fresh: () => boolean,
  ) {}

  /** not_stored once a WAL write failed (the log takes nothing more until a restart), full at WAL_MAX_BYTES. */
  admits(): 'ok' | Refusal {
    if (this.wal.broken !== undefined) return 'not_stored';
    return this.wal.hasRoom(0) ? 'ok' : 'full';
  }

  accept(entry: Entry, push: Push, answer: Answer): Outcome | 'pending' {
    const wal = this.wal;
    if (!wal.hasRoom(entry.body.length + 8 * entry.count)) {
      const admitted = this.admits();
      return admitted === 'ok' ? 'full' : admitted;
    }
    const ref = wal.nextRef();
    const pushed = push({ ...entry, wal: ref });
    if (pushed !== 'ok') return pushed;
    wal.appendEvents(ref, entry.receivedAt, entry.spans, entry.body, (ok) => answer(ok && this.fresh() ? 'accepted' : 'not_stored'), entry.idem);
    return 'pending';
  }

  /** `{first}-{instance}-{log id}-{segment}-{offset}-{event}` of the first event, all but the first in base 36. */
  batchId(first: Segment, firstReceivedAt: number): string | undefined {
    const ref = first.entry.wal;
    if (ref === undefined) return undefined;
    return `${firstReceivedAt}-${this.instanceId}-${this.wal.logId}-${ref.seg.toString(36)}-${ref.off.toString(36)}-${(ref.base + first.from).toString(36)}`;
  }

  cut(batch: Batch): Promise<void> | undefined {
    const first = batch.segments[0]!;
    const last = batch.segments.at(-1)!;
    const a = first.entry.wal;
    const b = last.entry.wal;
    if (a === undefined || b === undefined) return undefined;
    const { seg, durable } = this.wal.appendCut({
      id: batch.id,
      key: batch.key,
      events: batch.events,
      first: batch.firstReceivedAt,
      last: batch.lastReceivedAt,
      from: [a.seg, a.off, a.base + first.from],
      to: [b.seg, b.off, b.base + last.to],
      ...partitionOf(batch),
    });
    this.cutSegs.set(batch.id, seg);
    return durable;
  }

  /** Stored or spilled (or dropped: a bug), the events leave the WAL; kept, they stay for the next start. */
  settled(batch: Batch, outcome: Settled): void {
    if (outcome === 'kept') return;
    const bySeg = new Map<number, number>();
    for (const { entry, from, to } of batch.segments) {
      if (entry.wal !== undefined) bySeg.set(entry.wal.seg, (bySeg.get(entry.wal.seg) ?? 0) + to - from);
    }
    const cutSeg = this.cutSegs.get(batch.id);
    this.cutSegs.delete(batch.id);
    this.wal.settle(batch.id, bySeg, cutSeg);
  }
}

/** A partitioned batch's `part` and `open` for its cut record (src/wal/format.ts); nothing for the others. */
function partitionOf(batch: Batch): Pick<CutRecord, 'part' | 'open'> {
  if (batch.partition === undefined) return {};
  const { field, value, openFrom } = batch.partition;
  const ref = openFrom?.entry.wal;
  return { part: { field, value }, ...(ref !== undefined && { open: [ref.seg, ref.off, ref.base + openFrom!.index] as const }) };
}
