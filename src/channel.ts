// Bounded FIFO of accepted requests between the HTTP front and the batcher.
//
// Invariants:
// - a request enters whole or not at all (tryPush answers 'full'), so an SDK retry never
//   duplicates half a batch;
// - events and bytes held stay within their bounds, except that an empty channel always takes
//   one request, so a request larger than the bound is not refused forever;
// - once closed, nothing enters; what is inside can still be shifted out.

/** One accepted request: its body, where each event is in it, and when it arrived. */
export interface Entry {
  readonly receivedAt: number;
  readonly body: Buffer;
  /** Event i is body[spans[2i], spans[2i + 1]). */
  readonly spans: readonly number[];
  readonly count: number;
  /** Bytes held: body.length (the front keeps little beside the events, see ParsedEvents). */
  readonly bytes: number;
  /** ACK_LEVEL=disk: where the request's record is in the write-ahead log (src/wal/). */
  readonly wal?: WalRef;
  /** ACK_LEVEL=s3: who waits for the request's events to be stored (src/acks.ts). */
  readonly ack?: AckWaiter;
  /** The request's Idempotency-Key and its body's hash (src/idempotency.ts); undefined without one. */
  readonly idem?: IdemKey | undefined;
  /**
   * ACK_LEVEL=s3, a request with an Idempotency-Key: told where its events ended up when that is
   * known only after its answer (it was answered `unconfirmed`).
   */
  readonly late?: (outcome: 'stored' | 'spilled' | 'not_stored') => void;
}

/** An Idempotency-Key and what identifies the body it came with: CRC-32 (as a signed int32) and length of the decompressed body. */
export interface IdemKey {
  readonly key: string;
  readonly hash: number;
  readonly bytes: number;
}

/** A request's record in the write-ahead log; its event i is event `base + i` of that record. */
export interface WalRef {
  readonly seg: number;
  readonly off: number;
  readonly base: number;
}

/** The answer waiting for a request's events: told once every one of them is stored, spilled or dropped. */
export interface AckWaiter {
  pending: number;
  spilled: boolean;
  dropped: boolean;
  readonly done: (outcome: 'stored' | 'spilled' | 'not_stored' | 'unconfirmed') => void;
  /** Told where the events ended up if that comes after `done('unconfirmed')` (Entry.late). */
  readonly late: ((outcome: 'stored' | 'spilled' | 'not_stored') => void) | undefined;
}

export type PushResult = 'ok' | 'full' | 'closed';

export class Channel {
  #entries: (Entry | undefined)[] = [];
  #head = 0;
  #events = 0;
  #bytes = 0;
  #closed = false;

  constructor(
    private readonly maxEvents: number,
    private readonly maxBytes: number,
  ) {}

  get events(): number {
    return this.#events;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /**
   * What tryPush would answer for the smallest request, without one: the front asks before
   * parsing, so that under overload a refusal costs no parse.
   */
  admits(): PushResult {
    if (this.#closed) return 'closed';
    return this.#events > 0 && (this.#events >= this.maxEvents || this.#bytes >= this.maxBytes) ? 'full' : 'ok';
  }

  tryPush(entry: Entry): PushResult {
    if (this.#closed) return 'closed';
    const count = entry.count;
    if (this.#events > 0 && (this.#events + count > this.maxEvents || this.#bytes + entry.bytes > this.maxBytes)) {
      return 'full';
    }
    this.#entries.push(entry);
    this.#events += count;
    this.#bytes += entry.bytes;
    return 'ok';
  }

  /** An entry recovered at start-up (the write-ahead log's replay): taken whatever the bounds, before any request. */
  restore(entry: Entry): void {
    this.#entries.push(entry);
    this.#events += entry.count;
    this.#bytes += entry.bytes;
  }

  shift(): Entry | undefined {
    if (this.#head === this.#entries.length) return undefined;
    const entry = this.#entries[this.#head]!;
    this.#entries[this.#head++] = undefined;
    // Drop the consumed prefix now and then, so shift stays O(1) amortised without a ring buffer.
    if (this.#head === this.#entries.length) {
      this.#entries = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#entries.length) {
      this.#entries = this.#entries.slice(this.#head);
      this.#head = 0;
    }
    this.#events -= entry.count;
    this.#bytes -= entry.bytes;
    return entry;
  }

  close(): void {
    this.#closed = true;
  }
}
