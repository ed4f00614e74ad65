// Reading a request body: one buffer, capped at MAX_BODY_BYTES, within a process-wide budget for
// bodies in flight; and discarding, within bounds, the rest of a body answered early.
//
// A body that arrives whole with its headers (most do) is handed over as a view of uWS's memory
// and never buffered here. Otherwise it is read into one buffer, doubled as bytes arrive up to
// its Content-Length (chunked: MAX_BODY_BYTES); the budget counts its capacity.
// A uWS response must not be touched after onAborted ran, nor after the socket closed.
import type { HttpResponse } from 'uWebSockets.js';
import type { HttpCounts } from '../metrics/http.js';

type BudgetField = 'bodiesInFlightBytes' | 'bodiesAwaitingBytes';

/**
 * Bytes of request bodies, across all connections: being read (their buffers' capacity), or, in a
 * worker thread, handed over and awaiting their answer (post-events.ts).
 */
export class BodyBudget {
  /** `counts[field]` is the count, so that metrics read it where it is kept. */
  constructor(
    readonly maxBytes: number,
    private readonly counts: Pick<HttpCounts, BudgetField>,
    private readonly field: BudgetField = 'bodiesInFlightBytes',
  ) {}

  tryTake(bytes: number): boolean {
    if (this.counts[this.field] + bytes > this.maxBytes) return false;
    this.counts[this.field] += bytes;
    return true;
  }

  give(bytes: number): void {
    this.counts[this.field] -= bytes;
  }
}

export interface BodyLimits {
  readonly maxBodyBytes: number;
  /** After an early answer, read and drop at most this much of the rest of the body... */
  readonly discardMaxBytes: number;
  /** ...for at most this long, then close. */
  readonly discardMaxMs: number;
}

/** What the reader hands on; each runs corked, at most once per request. */
export interface BodyHandler<C> {
  /** The whole body; a view of uWS's memory, valid only during this call, unless `owned`. */
  body(res: HttpResponse, body: Buffer, owned: boolean, context: C): void;
  /** The body passed MAX_BODY_BYTES (413) or the budget is spent (503): answer, with send's CLOSE flag. */
  refuse(res: HttpResponse, why: 'too_large' | 'busy', context: C): void;
}

const FIRST_CAPACITY = 16 * 1024;

/**
 * Clients that send their whole body before reading (Python's http.client, many SDKs) see a
 * reset instead of the answer if the connection closes while they still send: read and drop
 * the rest, as mature servers do, but only so much and so long, then close.
 */
class Discard {
  #bytes = 0;
  readonly #timer: NodeJS.Timeout;

  constructor(
    private readonly res: HttpResponse,
    private readonly limits: BodyLimits,
  ) {
    // Also for a client that stops sending: uWS's own idle timeout would take 10 s.
    this.#timer = setTimeout(this.#hangUp, limits.discardMaxMs);
  }

  push(bytes: number, isLast: boolean): void {
    this.#bytes += bytes;
    if (isLast) {
      clearTimeout(this.#timer);
      // Ends the answer send() began with its CLOSE flag; its `connection: close` header makes the
      // client hang up. (Not end('', true): uWS 20 then writes that header into the body.)
      this.res.cork(() => this.res.end(''));
    } else if (this.#bytes > this.limits.discardMaxBytes) {
      this.#hangUp();
    }
  }

  /** Past the bounds: hang up, leaving the answer unterminated; the client has its status. */
  #hangUp = (): void => {
    clearTimeout(this.#timer);
    this.res.close();
  };

  aborted(): void {
    clearTimeout(this.#timer);
  }
}

/** For a request about to be answered before its body is read (with send's CLOSE flag): call before send. */
export function discardBody(res: HttpResponse, limits: BodyLimits): void {
  const discard = new Discard(res, limits);
  res.onAborted(() => discard.aborted());
  res.onData((chunk, isLast) => discard.push(chunk.byteLength, isLast));
}

export class BodyReader<C> {
  #done = false;
  #buffer: Buffer | undefined;
  #received = 0;
  #discard: Discard | undefined;

  /** `declared`: Content-Length, or -1 for a chunked body. `context`: the request's, passed back to the handler. */
  constructor(
    private readonly res: HttpResponse,
    private readonly declared: number,
    private readonly limits: BodyLimits,
    private readonly budget: BodyBudget,
    private readonly handler: BodyHandler<C>,
    private readonly context: C,
  ) {
    res.onAborted(this.#onAborted);
    res.onData(this.#onData);
  }

  #onAborted = (): void => {
    this.#release();
    this.#done = true;
    this.#discard?.aborted();
  };

  #onData = (chunk: ArrayBuffer, isLast: boolean): void => {
    if (this.#discard !== undefined) return this.#discard.push(chunk.byteLength, isLast);
    if (this.#done) return;
    // uWS 20.57 hands over an empty first piece when the body comes after the headers: nothing to keep.
    if (chunk.byteLength === 0 && !isLast) return;
    const received = this.#received + chunk.byteLength;
    if (received > this.limits.maxBodyBytes) return this.#refuse('too_large', isLast);
    if (isLast && this.#buffer === undefined) {
      // The whole body in one piece: no copy here; the parser keeps what it needs.
      this.#done = true;
      this.res.cork(() => this.handler.body(this.res, Buffer.from(chunk), false, this.context));
      return;
    }
    if (received > (this.#buffer?.length ?? 0) && !this.#grow(received)) return this.#refuse('busy', isLast);
    const buffer = this.#buffer!;
    // uWS reuses the chunk's memory after this callback returns: copy it into ours.
    buffer.set(new Uint8Array(chunk), this.#received);
    this.#received = received;
    if (!isLast) return;
    this.#release();
    this.#done = true;
    const owned = received === buffer.length;
    this.res.cork(() => this.handler.body(this.res, owned ? buffer : buffer.subarray(0, received), owned, this.context));
  };

  /**
   * Capacity for `needed` bytes, doubling as bytes arrive up to what the body can be (its
   * Content-Length, or MAX_BODY_BYTES when chunked): a client that declares a large body and
   * drips it holds what it has sent against the budget, not what it declared.
   */
  #grow(needed: number): boolean {
    const old = this.#buffer;
    const ceiling = this.declared >= 0 ? Math.max(this.declared, needed) : this.limits.maxBodyBytes;
    const capacity = Math.min(ceiling, Math.max(needed, 2 * (old?.length ?? FIRST_CAPACITY / 2)));
    if (!this.budget.tryTake(capacity - (old?.length ?? 0))) return false;
    const buffer = Buffer.allocUnsafe(capacity);
    if (old !== undefined) old.copy(buffer, 0, 0, this.#received);
    this.#buffer = buffer;
    return true;
  }

  #release(): void {
    if (this.#buffer === undefined) return;
    this.budget.give(this.#buffer.length);
    this.#buffer = undefined;
  }

  #refuse(why: 'too_large' | 'busy', isLast: boolean): void {
    this.#release();
    this.#done = true;
    this.#discard = new Discard(this.res, this.limits);
    this.res.cork(() => this.handler.refuse(this.res, why, this.context));
    if (isLast) this.#discard.push(0, true);
  }
}
