// POST /v1/events: headers checked, body read, parsed and validated, events into the channel, per docs/api.md.
//
// A uWS response must not be touched after its onAborted ran; every body is therefore handled
// synchronously inside the last onData call, and when the intake answers later (ACK_LEVEL=disk or
// s3, or a worker thread's intake) the route takes onAborted over and answers only a response
// that is still there.
//
// A request answered later pauses its connection until it is answered. uWS closes a connection
// that sends a request while one is unanswered (it refuses "async pipelining"), and closes it on a
// FIN (half-close) too: paused, it reads neither, so a pipelined request is read, and a FIN seen,
// only once the answer is written. What it read before the pause (two requests in one packet)
// still closes the connection: with answersLater the hand-over waits for the end of the turn of
// the event loop, so that such a request, whose client is gone, is never stored (withdrawn).
import zlib from 'node:zlib';
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import type { Logger } from 'pino';
import { isReceipt, type Refusal, type Reply } from '../acks.js';
import type { Entry } from '../channel.js';
import type { HttpCounts } from '../metrics/http.js';
import type { Intake } from '../pipeline.js';
import type { Access } from './access.js';
import { BODY_TOO_LARGE, type BodyFormat, gunzipCapped, type ParseLimits, parseEvents, Rejection } from './body.js';
import { bodyFormat, contentLength, idempotencyKey, noLength, requestOrigin } from './headers.js';
import { BodyBudget, type BodyHandler, type BodyLimits, BodyReader, discardBody } from './read-body.js';
import * as R from './respond.js';

export interface EventsOptions {
  readonly maxBodyBytes: number;
  readonly maxEventsPerRequest: number;
  readonly maxEventDepth: number;
  readonly maxBodiesInFlightBytes: number;
  /**
   * The intake answers later (ACK_LEVEL=disk or s3; a worker thread's): each request is handed
   * over at the end of this turn of the event loop, if its client is still there (see the top).
   */
  readonly answersLater?: boolean;
  /**
   * A worker thread's bound on the bytes of bodies handed over and not yet answered (beyond it:
   * 503 awaiting_answers). Undefined: none of the front's own (the channel bounds them).
   */
  readonly maxBodiesAwaitingBytes?: number;
}

/** A request handed over or about to be: what its answer needs. */
interface Waiting {
  readonly res: HttpResponse;
  readonly count: number;
  readonly bytes: number;
  readonly corsOrigin: string;
  /** The client is gone (uWS ran onAborted): nothing may be written. */
  gone: boolean;
}

/** What the server knows that decides a request before its body. */
export interface ServerState {
  shuttingDown(): boolean;
}

/** What a request carries from its headers to its body. */
interface PostContext {
  readonly format: BodyFormat;
  readonly gzip: boolean;
  readonly corsOrigin: string;
  /** Its Idempotency-Key, or ''. */
  readonly key: string;
}

const QUEUE_FULL_LOG_INTERVAL_MS = 10_000;
const LOST_LOG_INTERVAL_MS = 10_000;
/** After an early answer, read and drop up to this many times MAX_BODY_BYTES of body, for up to this long. */
const DISCARD_BODIES = 8;
const DISCARD_MAX_MS = 5000;

export class EventsRoute implements BodyHandler<PostContext> {
  readonly #budget: BodyBudget;
  readonly #bodyLimits: BodyLimits;
  readonly #parseLimits: ParseLimits;
  readonly #awaiting: BodyBudget | undefined;
  /** answersLater: the requests of this turn of the event loop, handed over at its end. */
  #handOver: { waiting: Waiting; entry: Entry }[] = [];
  #queueFullUnlogged = 0;
  #queueFullLoggedAt = 0;
  #lostUnlogged = 0;
  #lostLoggedAt = -Infinity;

  constructor(
    private readonly options: EventsOptions,
    private readonly state: ServerState,
    private readonly intake: Intake,
    private readonly counts: HttpCounts,
    private readonly access: Access,
    private readonly respond: R.Responder,
    private readonly log: Logger,
  ) {
    this.#budget = new BodyBudget(options.maxBodiesInFlightBytes, counts);
    this.#bodyLimits = { maxBodyBytes: options.maxBodyBytes, discardMaxBytes: DISCARD_BODIES * options.maxBodyBytes, discardMaxMs: DISCARD_MAX_MS };
    this.#parseLimits = { maxEvents: options.maxEventsPerRequest, maxDepth: options.maxEventDepth };
    const maxAwaiting = options.maxBodiesAwaitingBytes;
    this.#awaiting = maxAwaiting === undefined ? undefined : new BodyBudget(maxAwaiting, counts, 'bodiesAwaitingBytes');
  }

  post = (res: HttpResponse, req: HttpRequest): void => {
    // Headers must be read now: req is only valid until this function returns.
    const lengthHeader = req.getHeader('content-length');
    const declared = lengthHeader === '' ? (req.getHeader('transfer-encoding') === '' ? noLength(req) : -1) : contentLength(req, lengthHeader);
    if (Number.isNaN(declared)) return this.respond.send(res, '400', R.INVALID_LENGTH, '', R.FLUSH_NOW);
    const origin = requestOrigin(req);
    if (origin === undefined) return this.#early(res, '400', R.TWO_ORIGINS, '', declared);
    const corsOrigin = this.access.corsOrigin(origin);
    if (declared > this.options.maxBodyBytes) {
      this.counts.rejectedBodyTooLarge++;
      // uWS drops a connection with a Content-Length of 10 digits or more right after this handler.
      if (lengthHeader.length >= 10) return this.respond.send(res, '413', JSON.stringify(BODY_TOO_LARGE), corsOrigin, R.FLUSH_NOW);
      return this.#early(res, '413', JSON.stringify(BODY_TOO_LARGE), corsOrigin, declared);
    }
    if (this.state.shuttingDown()) return this.#early(res, '503', R.SHUTTING_DOWN, corsOrigin, declared);
    if (!this.access.originAllowed(origin)) return this.#early(res, '403', R.ORIGIN_NOT_ALLOWED, '', declared);
    if (!this.access.authorized(req)) return this.#early(res, '401', R.UNAUTHORIZED, corsOrigin, declared);
    const key = idempotencyKey(req);
    if (key === undefined) return this.#early(res, '400', R.INVALID_IDEMPOTENCY_KEY, corsOrigin, declared);
    const format = bodyFormat(req.getHeader('content-type'));
    if (format === undefined) return this.#early(res, '415', R.UNSUPPORTED_TYPE, corsOrigin, declared);
    const encoding = req.getHeader('content-encoding').toLowerCase();
    const gzip = encoding === 'gzip';
    if (!gzip && encoding !== '' && encoding !== 'identity') return this.#early(res, '415', R.UNSUPPORTED_ENCODING, corsOrigin, declared);
    this.#read(res, declared, { format, gzip, corsOrigin, key });
  };

  /**
   * The body read; or, under overload, where most requests meet a full channel, refused at the
   * headers and dropped unread (a chunked body, unbounded by its headers, is read all the same,
   * within MAX_BODY_BYTES).
   */
  #read(res: HttpResponse, declared: number, context: PostContext): void {
    const admitted = declared >= 0 ? this.intake.admits() : 'ok';
    if (admitted !== 'ok') return this.#refuseUnread(res, admitted, context.corsOrigin, declared);
    new BodyReader(res, declared, this.#bodyLimits, this.#budget, this, context);
  }

  /** An answer before the body is read: the rest of the body is discarded (bounded), then the connection closed. */
  #early(res: HttpResponse, status: '400' | '401' | '403' | '413' | '415' | '503', json: string, corsOrigin: string, declared: number, flags = 0): void {
    if (declared === 0) return this.respond.send(res, status, json, corsOrigin, flags);
    discardBody(res, this.#bodyLimits);
    this.respond.send(res, status, json, corsOrigin, flags | R.CLOSE);
  }

  /**
   * A refusal decided at the headers: the body, at most its Content-Length (checked against
   * MAX_BODY_BYTES), is dropped as uWS reads it (no buffer, no budget, no parse), and the answer
   * written once it is all in, so that the connection stays open for the client's retry. The
   * channel may have room by then: the request is refused all the same, as it would have been a
   * moment earlier.
   */
  #refuseUnread(res: HttpResponse, why: Refusal, corsOrigin: string, declared: number): void {
    if (declared === 0) return this.#refuseQueue(res, why, corsOrigin);
    res.onAborted(ignore);
    res.onData((_chunk, isLast) => {
      if (isLast) res.cork(() => this.#refuseQueue(res, why, corsOrigin));
    });
  }

  /** BodyHandler */
  refuse(res: HttpResponse, why: 'too_large' | 'busy', { corsOrigin }: PostContext): void {
    if (why === 'busy') {
      this.counts.rejectedBusy++;
      return this.respond.send(res, '503', R.BUSY, corsOrigin, R.CLOSE | R.RETRY_AFTER);
    }
    this.counts.rejectedBodyTooLarge++;
    this.respond.send(res, '413', JSON.stringify(BODY_TOO_LARGE), corsOrigin, R.CLOSE);
  }

  /** BodyHandler */
  body(res: HttpResponse, wire: Buffer, owned: boolean, { format, gzip, corsOrigin, key }: PostContext): void {
    // Under overload most requests meet a full channel: refuse them before paying for a parse.
    const admitted = this.intake.admits();
    if (admitted !== 'ok') return this.#refuseQueue(res, admitted, corsOrigin);
    const raw = gzip ? gunzipCapped(wire, this.options.maxBodyBytes) : wire;
    if (raw instanceof Rejection) {
      if (raw.status === 413) this.counts.rejectedBodyTooLarge++;
      return this.respond.send(res, raw.status === 413 ? '413' : '400', JSON.stringify(raw), corsOrigin);
    }
    const parsed = parseEvents(raw, format, this.#parseLimits, gzip || owned);
    if (parsed instanceof Rejection) return this.respond.send(res, '400', JSON.stringify(parsed), corsOrigin);
    const count = parsed.spans.length / 2;
    // A repeat is known by its decompressed body: CRC-32 and length (docs/api.md#idempotency-key); no key, no hashing.
    const idem = key === '' ? undefined : { key, hash: zlib.crc32(raw) | 0, bytes: raw.length };
    this.#accept(res, { receivedAt: Date.now(), body: parsed.body, spans: parsed.spans, count, bytes: parsed.bytes, idem }, corsOrigin);
  }

  /** The request goes to the intake whole; answered now, or once the intake says (see the top). */
  #accept(res: HttpResponse, entry: Entry, corsOrigin: string): void {
    // The entry's body may be handed to another thread: only its count and size are read later.
    const waiting: Waiting = { res, count: entry.count, bytes: entry.body.length, corsOrigin, gone: false };
    if (this.options.answersLater) {
      if (this.#awaiting !== undefined && !this.#awaiting.tryTake(waiting.bytes)) return this.#refuseAwaiting(res, corsOrigin);
      this.#wait(waiting);
      this.#handOver.push({ waiting, entry });
      if (this.#handOver.length === 1) setImmediate(this.#handOverAll);
      return;
    }
    const outcome = this.intake.accept(entry, (later) => this.#answerLater(waiting, later));
    if (outcome === 'pending') this.#wait(waiting);
    else this.#answer(res, outcome, waiting.count, corsOrigin);
  }

  /** Until answered: onAborted taken over, and nothing more read from the connection (see the top). */
  #wait(waiting: Waiting): void {
    waiting.res.onAborted(() => (waiting.gone = true));
    waiting.res.pause();
  }

  /** answersLater: this turn's requests, in order; those whose client is gone are not handed over. */
  #handOverAll = (): void => {
    const handOver = this.#handOver;
    this.#handOver = [];
    for (const { waiting, entry } of handOver) {
      if (waiting.gone) {
        this.#awaiting?.give(waiting.bytes);
        this.counts.requestsWithdrawn++;
        continue;
      }
      const outcome = this.intake.accept(entry, (later) => this.#answerLater(waiting, later));
      if (outcome !== 'pending') this.#answerLater(waiting, outcome);
    }
  };

  /** The answer to a paused request: its connection is read again once it is written. */
  #answerLater(waiting: Waiting, outcome: Reply): void {
    this.#awaiting?.give(waiting.bytes);
    const { res, count, corsOrigin } = waiting;
    if (!waiting.gone) {
      res.cork(() => {
        // Before the answer: uWS forbids touching a response once it is ended.
        res.resume();
        this.#answer(res, outcome, count, corsOrigin);
      });
      return;
    }
    this.#answer(res, outcome, count, corsOrigin, true);
    if (isReceipt(outcome)) this.#answerLost();
  }

  /** `gone`: the client is: the events are counted, nothing is sent. */
  #answer(res: HttpResponse, outcome: Reply, count: number, corsOrigin: string, gone = false): void {
    if (isReceipt(outcome)) this.counts.eventsAccepted += count;
    if (gone) return;
    if (outcome === 'accepted') return this.respond.send(res, '202', `{"accepted":${count}}`, corsOrigin);
    if (outcome === 'stored' || outcome === 'spilled') return this.respond.send(res, '202', receiptStored(count, outcome), corsOrigin);
    if (outcome === 'replayed_accepted') return this.respond.send(res, '202', `{"accepted":${count}}`, corsOrigin, R.REPLAYED);
    // The same body, so the same count as the first answer's.
    if (outcome === 'replayed_stored' || outcome === 'replayed_spilled') return this.respond.send(res, '202', receiptStored(count, outcome === 'replayed_stored' ? 'stored' : 'spilled'), corsOrigin, R.REPLAYED);
    if (outcome === 'in_progress') return this.respond.send(res, '409', R.IN_PROGRESS, corsOrigin, R.RETRY_AFTER);
    if (outcome === 'key_reused') return this.respond.send(res, '422', R.IDEMPOTENCY_KEY_REUSED, corsOrigin);
    this.#refuseQueue(res, outcome, corsOrigin);
  }

  /** 503 awaiting_answers: this worker thread's bodies waiting for their answer fill its share of MAX_BODIES_IN_FLIGHT_BYTES. */
  #refuseAwaiting(res: HttpResponse, corsOrigin: string): void {
    this.counts.rejectedAwaitingAnswers++;
    this.respond.send(res, '503', R.AWAITING_ANSWERS, corsOrigin, R.RETRY_AFTER);
  }

  /**
   * Stored, and its client gone before the answer (it reset or closed the connection): the client
   * cannot know, and may send the events again. Counted, and logged at most once in 10 s.
   */
  #answerLost(): void {
    this.counts.answersLostClientGone++;
    this.#lostUnlogged++;
    const now = Date.now();
    if (now - this.#lostLoggedAt < LOST_LOG_INTERVAL_MS) return;
    this.log.warn({ lost: this.#lostUnlogged }, 'answers lost: clients gone before their events were acknowledged');
    this.#lostLoggedAt = now;
    this.#lostUnlogged = 0;
  }

  /**
   * 503: the channel is closed (shutdown), the WAL failed (not_stored), the DLQ or the channel is
   * full (back-pressure: retry after a second), or ACK_TIMEOUT_MS passed (unconfirmed).
   */
  #refuseQueue(res: HttpResponse, why: Refusal | 'unconfirmed', corsOrigin: string): void {
    if (why === 'closed') return this.respond.send(res, '503', R.SHUTTING_DOWN, corsOrigin);
    if (why === 'not_stored') return this.respond.send(res, '503', R.NOT_STORED, corsOrigin, R.RETRY_AFTER);
    if (why === 'unconfirmed') {
      this.counts.ackTimeouts++;
      return this.respond.send(res, '503', R.ACK_TIMEOUT, corsOrigin, R.RETRY_AFTER);
    }
    if (why === 'dlq_full') {
      // The DLQ's own line says so, once a refused batch; /readyz is not ready meanwhile.
      this.counts.rejectedDlqFull++;
      return this.respond.send(res, '503', R.DLQ_FULL, corsOrigin, R.RETRY_AFTER);
    }
    this.counts.rejectedQueueFull++;
    this.#logQueueFull();
    this.respond.send(res, '503', R.QUEUE_FULL, corsOrigin, R.RETRY_AFTER);
  }

  // Rate-limited: under overload this would otherwise be one line per request.
  #logQueueFull(): void {
    this.#queueFullUnlogged++;
    const now = Date.now();
    if (now - this.#queueFullLoggedAt < QUEUE_FULL_LOG_INTERVAL_MS) return;
    this.log.warn({ rejected: this.#queueFullUnlogged, channelEvents: this.intake.events, channelBytes: this.intake.bytes }, 'queue full (drop)');
    this.#queueFullLoggedAt = now;
    this.#queueFullUnlogged = 0;
  }
}

/** onAborted of a request refused unread: nothing of it is kept, nothing to release. */
const ignore = (): void => {};

/** The 202 of ACK_LEVEL=s3: where the events are. */
const receiptStored = (count: number, where: 'stored' | 'spilled'): string => `{"accepted":${count},"stored":"${where === 'stored' ? 's3' : 'dlq'}"}`;
