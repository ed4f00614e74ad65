// Idempotency-Key (docs/api.md#idempotency-key): a request sent again with the key of one already
// accepted is answered as that one was, and stores nothing, so a client that lost a 202 (a
// timeout, a reset) can retry without storing its events twice.
//
// One table per process, on the main thread: the front (every worker thread's too) hands keyed
// requests to the IdempotentIntake in front of the pipeline. The front computes the key's
// fingerprint of the body (CRC-32 and length of the decompressed body) where it reads the body;
// a request without a key passes straight through.
//
// Invariants:
// - a key is held from its first request on: in flight until that one is answered, then with its
//   answer if that was a receipt (202), and dropped if it was refused (4xx, 503), so a refused
//   request does not use up its key; at ACK_LEVEL=s3 a request answered `unconfirmed` stays in
//   flight until its events are stored, spilled or dropped (Entry.late);
// - a key is forgotten IDEMPOTENCY_WINDOW_SECONDS after its first request was received, or
//   earlier when IDEMPOTENCY_MAX_KEYS are held and a new one comes (the oldest first, counted);
// - ACK_LEVEL=disk: the key of each request is written to the WAL with its events (src/wal/) and
//   kept for the window in the key journal beside it (src/wal/key-journal.ts); the keys a restart
//   finds in both are put back before the server listens.
import type { Answer, KeyReply, Outcome, Refusal, Reply } from './acks.js';
import type { Entry, IdemKey } from './channel.js';
import type { Intake } from './pipeline.js';

/** What a key's first request has become: in flight, or the receipt repeats are given again. */
type State = 'in_flight' | 'accepted' | 'stored' | 'spilled';

/** A key held: its first request's fingerprint, when it was received, and what it became. */
export interface Held {
  readonly key: string;
  readonly hash: number;
  readonly bytes: number;
  readonly at: number;
  state: State;
  /** Out of the table (refused, expired, evicted): its place in the queue is skipped. */
  gone: boolean;
}

/** What the table counts (the idempotency_* metrics). */
export interface IdempotencyCounts {
  replays: number;
  reused: number;
  inProgress: number;
  evicted: number;
}

const REPLAYS = { accepted: 'replayed_accepted', stored: 'replayed_stored', spilled: 'replayed_spilled' } as const;

/** Below this many places in the queue, gone ones are not worth a compaction. */
const COMPACT_MIN = 1024;

export class IdempotencyTable {
  readonly #held = new Map<string, Held>();
  /** Every key held, and some gone, in the order they came: the oldest is at #head. */
  #queue: Held[] = [];
  #head = 0;
  /** Places in the queue (from #head on) whose key is gone. */
  #gone = 0;
  readonly counts: IdempotencyCounts = { replays: 0, reused: 0, inProgress: 0, evicted: 0 };

  /** `now`: the wall clock in ms, as Entry.receivedAt (received times in the WAL are compared with it). */
  constructor(
    private readonly windowMs: number,
    private readonly maxKeys: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Keys held. */
  get size(): number {
    return this.#held.size;
  }

  /**
   * A request with a key received at `at`: a new key is held in flight (its Held returned, for
   * settle()); a key held is answered instead: its receipt again, in_progress, or key_reused.
   */
  begin(idem: IdemKey, at: number): Held | KeyReply {
    this.#expire();
    const held = this.#held.get(idem.key);
    if (held !== undefined && held.at + this.windowMs > this.now()) {
      if (held.hash !== idem.hash || held.bytes !== idem.bytes) {
        this.counts.reused++;
        return 'key_reused';
      }
      if (held.state === 'in_flight') {
        this.counts.inProgress++;
        return 'in_progress';
      }
      this.counts.replays++;
      return REPLAYS[held.state];
    }
    if (held !== undefined) this.#drop(held);
    return this.#add(idem, at, 'in_flight');
  }

  /** How a key's first request was answered, or (Entry.late) where its events ended up. */
  settle(held: Held, outcome: Outcome): void {
    if (held.gone) return;
    if (outcome === 'accepted' || outcome === 'stored' || outcome === 'spilled') held.state = outcome;
    // The events may still be stored: in flight until Entry.late says.
    else if (outcome !== 'unconfirmed') this.#drop(held);
  }

  /** Start-up (ACK_LEVEL=disk): a key the WAL holds, of a request acknowledged before the restart. */
  restore(idem: IdemKey, at: number): void {
    if (at + this.windowMs <= this.now()) return;
    const held = this.#held.get(idem.key);
    if (held !== undefined) this.#drop(held);
    this.#add(idem, at, 'accepted');
  }

  #add(idem: IdemKey, at: number, state: State): Held {
    const held: Held = { key: idem.key, hash: idem.hash, bytes: idem.bytes, at, state, gone: false };
    this.#held.set(idem.key, held);
    this.#queue.push(held);
    while (this.#held.size > this.maxKeys) {
      this.#drop(this.#oldest()!);
      this.counts.evicted++;
    }
    return held;
  }

  /** Keys past the window, oldest first (a key received out of order waits for its turn, or for its next request). */
  #expire(): void {
    const end = this.now() - this.windowMs;
    for (let held = this.#oldest(); held !== undefined && held.at <= end; held = this.#oldest()) this.#drop(held);
  }

  /** The oldest key held, gone places before it passed. */
  #oldest(): Held | undefined {
    while (this.#head < this.#queue.length && this.#queue[this.#head]!.gone) {
      this.#head++;
      this.#gone--;
    }
    return this.#queue[this.#head];
  }

  #drop(held: Held): void {
    held.gone = true;
    this.#held.delete(held.key);
    this.#gone++;
    // The queue keeps gone places until they are the oldest: refusals under overload would make
    // it grow with them for a whole window. Rebuilt once they are half of it (amortised O(1)).
    const length = this.#queue.length - this.#head;
    if (this.#gone >= COMPACT_MIN && 2 * this.#gone >= length) {
      this.#queue = this.#queue.filter((h, i) => i >= this.#head && !h.gone);
      this.#head = 0;
      this.#gone = 0;
    } else if (this.#head >= COMPACT_MIN && 2 * this.#head >= this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }
}

/** What the table stands in front of: the pipeline, whose answers are outcomes only. */
type Inner = Omit<Intake, 'accept'> & { accept(entry: Entry, answer: Answer): Outcome | 'pending' };

/** The pipeline with the table in front of it: what the front hands requests to. */
export class IdempotentIntake implements Intake {
  constructor(
    private readonly inner: Inner,
    readonly table: IdempotencyTable,
  ) {}

  admits(): 'ok' | Refusal {
    return this.inner.admits();
  }

  get events(): number {
    return this.inner.events;
  }

  get bytes(): number {
    return this.inner.bytes;
  }

  accept(entry: Entry, answer: (reply: Reply) => void): Reply | 'pending' {
    const idem = entry.idem;
    if (idem === undefined) return this.inner.accept(entry, answer);
    const held = this.table.begin(idem, entry.receivedAt);
    if (typeof held === 'string') return held;
    const told: Answer = (outcome) => {
      this.table.settle(held, outcome);
      answer(outcome);
    };
    const outcome = this.inner.accept({ ...entry, late: (final) => this.table.settle(held, final) }, told);
    if (outcome !== 'pending') this.table.settle(held, outcome);
    return outcome;
  }
}
