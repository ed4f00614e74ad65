// POST /v1/events: headers checked, body read, parsed and validated, events into the channel, per docs/api.md.
//
// A uWS response must not be touched after its onAborted ran; every body is therefore handled
// synchronously inside the last onData call, and when the intake answers later (ACK_LEVEL=disk or
// s3, or a worker thread's intake) the route takes onAborted over and answers only a response
// that is still there.
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import type { Logger } from 'pino';
import type { Outcome, Refusal } from '../acks.js';
import type { Entry } from '../channel.js';
import type { HttpCounts } from '../metrics/http.js';
import type { Intake } from '../pipeline.js';
import type { Access } from './access.js';
import { BODY_TOO_LARGE, type BodyFormat, gunzipCapped, type ParseLimits, parseEvents, Rejection } from './body.js';
import { bodyFormat, contentLength, noLength } from './headers.js';
import { BodyBudget, type BodyHandler, type BodyLimits, BodyReader, discardBody } from './read-body.js';
import * as R from './respond.js';

export interface EventsOptions {
  readonly maxBodyBytes: number;
  readonly maxEventsPerRequest: number;
  readonly maxEventDepth: number;
  readonly maxBodiesInFlightBytes: number;
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
}

const QUEUE_FULL_LOG_INTERVAL_MS = 10_000;
/** After an early answer, read and drop up to this many times MAX_BODY_BYTES of body, for up to this long. */
const DISCARD_BODIES = 8;
const DISCARD_MAX_MS = 5000;

export class EventsRoute implements BodyHandler<PostContext> {
  readonly #budget: BodyBudget;
  readonly #bodyLimits: BodyLimits;
  readonly #parseLimits: ParseLimits;
  #queueFullUnlogged = 0;
  #queueFullLoggedAt = 0;

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
  }

  post = (res: HttpResponse, req: HttpRequest): void => {
    // Headers must be read now: req is only valid until this function returns.
    const lengthHeader = req.getHeader('content-length');
    const declared = lengthHeader === '' ? (req.getHeader('transfer-encoding') === '' ? noLength(req) : -1) : contentLength(req, lengthHeader);
    if (Number.isNaN(declared)) return this.respond.send(res, '400', R.INVALID_LENGTH, '', R.FLUSH_NOW);
    const origin = this.access.cors ? req.getHeader('origin') : '';
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
    const format = bodyFormat(req.getHeader('content-type'));
    if (format === undefined) return this.#early(res, '415', R.UNSUPPORTED_TYPE, corsOrigin, declared);
    const encoding = req.getHeader('content-encoding').toLowerCase();
    const gzip = encoding === 'gzip';
    if (!gzip && encoding !== '' && encoding !== 'identity') return this.#early(res, '415', R.UNSUPPORTED_ENCODING, corsOrigin, declared);
    new BodyReader(res, declared, this.#bodyLimits, this.#budget, this, { format, gzip, corsOrigin });
  };

  /** An answer before the body is read: the rest of the body is discarded (bounded), then the connection closed. */
  #early(res: HttpResponse, status: '400' | '401' | '403' | '413' | '415' | '503', json: string, corsOrigin: string, declared: number, flags = 0): void {
    if (declared === 0) return this.respond.send(res, status, json, corsOrigin, flags);
    discardBody(res, this.#bodyLimits);
    this.respond.send(res, status, json, corsOrigin, flags | R.CLOSE);
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
  body(res: HttpResponse, wire: Buffer, owned: boolean, { format, gzip, corsOrigin }: PostContext): void {
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
    this.#accept(res, { receivedAt: Date.now(), body: parsed.body, spans: parsed.spans, count, bytes: parsed.bytes }, corsOrigin);
  }

  /** The request goes to the intake whole; answered now, or once the intake says (see the top). */
  #accept(res: HttpResponse, entry: Entry, corsOrigin: string): void {
    let aborted = false;
    // The entry's body may be handed to another thread: only its count is read later.
    const count = entry.count;
    const outcome = this.intake.accept(entry, (later) => {
      if (aborted) this.#answer(res, later, count, corsOrigin, true);
      else res.cork(() => this.#answer(res, later, count, corsOrigin));
    });
    if (outcome === 'pending') res.onAborted(() => (aborted = true));
    else this.#answer(res, outcome, count, corsOrigin);
  }

  /** `gone`: the client is: the events are counted, nothing is sent. */
  #answer(res: HttpResponse, outcome: Outcome, count: number, corsOrigin: string, gone = false): void {
    if (outcome === 'accepted' || outcome === 'stored' || outcome === 'spilled') this.counts.eventsAccepted += count;
    if (gone) return;
    if (outcome === 'accepted') return this.respond.send(res, '202', `{"accepted":${count}}`, corsOrigin);
    if (outcome === 'stored' || outcome === 'spilled') return this.respond.send(res, '202', `{"accepted":${count},"stored":"${outcome === 'stored' ? 's3' : 'dlq'}"}`, corsOrigin);
    this.#refuseQueue(res, outcome, corsOrigin);
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
