// The event-ingest client, for browsers and Node 22+: no dependencies, one file. Events are queued
// (bounded), sent in batches as JSON arrays under the server's limits, each batch with one
// Idempotency-Key that every retry of it reuses (so a retry after a lost 202 is stored once), and,
// in a browser, handed to navigator.sendBeacon when the page is hidden or goes away.

/** An event: any JSON object. */
export type IngestEvent = Record<string, unknown>;

export interface ClientOptions {
  /** The server's base URL, e.g. `https://ingest.example.com` (events go to `/v1/events` under it). */
  endpoint: string;
  /** Sent as `x-api-key`; in a beacon, which cannot carry headers, as `?api_key=`. */
  apiKey?: string;
  /** Events per request; at most the server's `MAX_EVENTS_PER_REQUEST`. Default 500. */
  maxBatchEvents?: number;
  /** Bytes of a request's JSON body; at most the server's `MAX_BODY_BYTES`. Default 512000. */
  maxBatchBytes?: number;
  /** How long an event waits for its batch to fill before it is sent anyway. Default 5000. */
  flushIntervalMs?: number;
  /** Events held, waiting to be sent; past it one is dropped (`dropWhenFull`). Default 10000. */
  maxQueueEvents?: number;
  /** When the queue is full: drop its oldest event for the new one, or the new one. Default `oldest`. */
  dropWhenFull?: 'oldest' | 'newest';
  /** Attempts per batch (network errors, 409 in_progress, 429, 5xx) before it is given up. Default 10. */
  maxAttempts?: number;
  /** Backoff: attempt n waits a random time up to min(retryMaxMs, retryBaseMs x 2^(n-1)), after any Retry-After. Defaults 500 and 30000. */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** A request not answered within this is aborted and retried. Default 30000 (keep it above the server's ACK_TIMEOUT_MS at ACK_LEVEL=s3). */
  timeoutMs?: number;
  /** In a browser, send what is queued with navigator.sendBeacon when the page is hidden or unloaded. Default true. */
  beaconOnHide?: boolean;
  /** Bytes of one beacon's body: browsers refuse beacons past 64 KiB in flight. Default 60000. */
  maxBeaconBytes?: number;
  /** Events refused, dropped or given up, with the server's error code where it gave one. */
  onError?: (error: ClientError) => void;
  /** Waits between attempts (tests give one that records the delays). Default: setTimeout. */
  wait?: (ms: number) => Promise<void>;
  /** The jitter's source, in [0, 1). Default Math.random. */
  random?: () => number;
}

export interface ClientError {
  /**
   * The server's `error` code for a request it refused (`invalid_json`, `too_deep`,
   * `body_too_large`, `unauthorized`, ...), or the client's own: `invalid_event` (not a JSON
   * object), `event_too_large` (one event over maxBatchBytes), `dropped` (the queue was full),
   * `closed` (tracked after close), `retries_exhausted` (maxAttempts reached).
   */
  code: string;
  message: string;
  /** The HTTP status, when an answer came. */
  status?: number;
  /** How many events this concerns (none of them stored, unless `retries_exhausted` followed a lost answer). */
  events: number;
}

export interface Counts {
  /** Events waiting to be sent. */
  queued: number;
  /** Events in answered (2xx) requests. */
  sent: number;
  /** Events handed to navigator.sendBeacon (the browser sends them; no answer is seen). */
  beaconed: number;
  /** Events dropped because the queue was full. */
  dropped: number;
  /** Events refused: by the client (invalid, too large, closed) or by the server (4xx). */
  refused: number;
  /** Events of batches given up after maxAttempts. */
  failed: number;
  /** Attempts after a batch's first. */
  retries: number;
}

export interface Client {
  /** Queues one event (a JSON object); never throws, never waits. */
  track(event: IngestEvent): void;
  /** Sends everything queued; resolves once it is sent, refused or given up. */
  flush(): Promise<void>;
  /** Stops taking events and the page listeners, then flushes. */
  close(): Promise<void>;
  readonly counts: Readonly<Counts>;
}

interface Queued {
  readonly text: string;
  readonly bytes: number;
}

interface Batch {
  readonly items: Queued[];
  readonly body: string;
  readonly bytes: number;
  readonly count: number;
  readonly key: string;
  beaconed: boolean;
}

type Settings = Required<Omit<ClientOptions, 'apiKey' | 'onError'>> & Pick<ClientOptions, 'apiKey' | 'onError'>;

const DEFAULTS: Omit<Settings, 'endpoint'> = {
  maxBatchEvents: 500,
  maxBatchBytes: 512_000,
  flushIntervalMs: 5000,
  maxQueueEvents: 10_000,
  dropWhenFull: 'oldest',
  maxAttempts: 10,
  retryBaseMs: 500,
  retryMaxMs: 30_000,
  timeoutMs: 30_000,
  beaconOnHide: true,
  maxBeaconBytes: 60_000,
  wait: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  random: Math.random,
};

/** What one attempt came to. */
interface Attempt {
  readonly ok: boolean;
  readonly retry: boolean;
  readonly status?: number;
  readonly code: string;
  readonly message: string;
  readonly retryAfterMs: number;
}

const encoder = new TextEncoder();

/** 16 random bytes in hex: crypto.randomUUID needs a secure context, getRandomValues does not. */
function newKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Retry-After as seconds or an HTTP date, in ms from now; 0 when absent or unreadable. */
function readRetryAfter(header: string | null): number {
  if (header === null) return 0;
  const seconds = Number(header);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(header) - Date.now();
  return ms > 0 ? ms : 0;
}

class IngestClient implements Client {
  readonly counts: Counts = { queued: 0, sent: 0, beaconed: 0, dropped: 0, refused: 0, failed: 0, retries: 0 };
  readonly #o: Settings;
  readonly #url: string;
  #queue: Queued[] = [];
  #queuedBytes = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Send what is queued now, full batch or not (the timer fired, or flush was called). */
  #due = false;
  #sending = false;
  #inFlight: Batch | undefined;
  #closed = false;
  #idle: (() => void)[] = [];
  readonly #hide = (e: { type: string }): void => {
    if (e.type === 'pagehide' || document.visibilityState === 'hidden') this.#beaconAll();
  };

  constructor(options: ClientOptions) {
    // An option given as undefined takes its default.
    const given = Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined));
    this.#o = { ...DEFAULTS, ...given } as Settings;
    this.#url = `${options.endpoint.replace(/\/+$/, '')}/v1/events`;
    if (this.#o.beaconOnHide && typeof document !== 'undefined' && typeof navigator !== 'undefined' && typeof navigator.sendBeacon === 'function') {
      addEventListener('pagehide', this.#hide);
      document.addEventListener('visibilitychange', this.#hide);
    }
  }

  track(event: IngestEvent): void {
    if (this.#closed) return this.#error({ code: 'closed', message: 'tracked after close()', events: 1 });
    let text: string | undefined;
    try {
      if (typeof event === 'object' && event !== null && !Array.isArray(event)) text = JSON.stringify(event);
    } catch {
      // A cycle or a BigInt: not JSON.
    }
    if (text === undefined) return this.#error({ code: 'invalid_event', message: 'an event must be a JSON-serialisable object', events: 1 });
    const bytes = encoder.encode(text).length;
    // The batch around it: the brackets.
    if (bytes + 2 > this.#o.maxBatchBytes) return this.#error({ code: 'event_too_large', message: `the event is ${bytes} bytes of JSON, over maxBatchBytes`, events: 1 });
    if (this.#queue.length >= this.#o.maxQueueEvents) {
      this.counts.dropped++;
      this.#error({ code: 'dropped', message: `the queue holds maxQueueEvents; the ${this.#o.dropWhenFull} event was dropped`, events: 1 }, false);
      if (this.#o.dropWhenFull === 'newest') return;
      this.#queuedBytes -= this.#queue.shift()!.bytes;
    }
    this.#queue.push({ text, bytes });
    this.#queuedBytes += bytes;
    this.counts.queued = this.#queue.length;
    if (this.#full()) this.#kick();
    else this.#timer ??= setTimeout(() => this.#fire(), this.#o.flushIntervalMs);
  }

  flush(): Promise<void> {
    const idle = new Promise<void>((resolve) => this.#idle.push(resolve));
    this.#due = true;
    this.#kick();
    return idle;
  }

  close(): Promise<void> {
    this.#closed = true;
    if (typeof document !== 'undefined') {
      removeEventListener('pagehide', this.#hide);
      document.removeEventListener('visibilitychange', this.#hide);
    }
    return this.flush();
  }

  #fire(): void {
    this.#timer = undefined;
    this.#due = true;
    this.#kick();
  }

  #kick(): void {
    // #pump catches what can fail (fetch, the answer, onError); a wait() of the caller's that
    // rejects ends this round, and the next track or flush starts another.
    this.#pump().catch(() => {});
  }

  #full(): boolean {
    return this.#queue.length >= this.#o.maxBatchEvents || this.#queuedBytes + this.#queue.length + 1 >= this.#o.maxBatchBytes;
  }

  /** One sender: batches go one at a time, in order, while there is something due or a full batch. */
  async #pump(): Promise<void> {
    if (this.#sending) return;
    this.#sending = true;
    try {
      while (this.#queue.length > 0 && (this.#due || this.#full())) await this.#send(this.#cut(this.#o.maxBatchBytes));
    } finally {
      this.#sending = false;
      this.#inFlight = undefined;
    }
    if (this.#queue.length > 0) {
      this.#timer ??= setTimeout(() => this.#fire(), this.#o.flushIntervalMs);
      return;
    }
    this.#due = false;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const resolve of this.#idle.splice(0)) resolve();
  }

  /** Takes the head of the queue, up to maxBatchEvents and `maxBytes` of body, as a batch with a key of its own. */
  #cut(maxBytes: number): Batch {
    let n = 0;
    // The body's bytes: brackets, events, commas.
    let bytes = 1;
    while (n < this.#queue.length && n < this.#o.maxBatchEvents && bytes + this.#queue[n]!.bytes + 1 <= maxBytes) bytes += this.#queue[n++]!.bytes + 1;
    const items = this.#queue.splice(0, n);
    this.#queuedBytes -= bytes - 1 - n;
    this.counts.queued = this.#queue.length;
    return { items, body: `[${items.map((q) => q.text).join(',')}]`, bytes, count: n, key: newKey(), beaconed: false };
  }

  async #send(batch: Batch): Promise<void> {
    this.#inFlight = batch;
    for (let attempt = 1; ; attempt++) {
      const result = await this.#attempt(batch);
      if (result.ok) {
        this.counts.sent += batch.count;
        break;
      }
      if (!result.retry) {
        this.counts.refused += batch.count;
        this.#error({ code: result.code, message: result.message, status: result.status, events: batch.count }, false);
        break;
      }
      if (attempt >= this.#o.maxAttempts) {
        this.counts.failed += batch.count;
        this.#error({ code: 'retries_exhausted', message: `gave up after ${attempt} attempts; the last: ${result.code}: ${result.message}`, status: result.status, events: batch.count }, false);
        break;
      }
      this.counts.retries++;
      // Full jitter: clients refused together do not come back together.
      const backoff = Math.min(this.#o.retryMaxMs, this.#o.retryBaseMs * 2 ** (attempt - 1));
      await this.#o.wait(result.retryAfterMs + this.#o.random() * backoff);
    }
  }

  async #attempt(batch: Batch): Promise<Attempt> {
    const headers: Record<string, string> = { 'content-type': 'application/json', 'idempotency-key': batch.key };
    if (this.#o.apiKey !== undefined) headers['x-api-key'] = this.#o.apiKey;
    let response: Response;
    try {
      response = await fetch(this.#url, { method: 'POST', body: batch.body, headers, signal: AbortSignal.timeout(this.#o.timeoutMs) });
    } catch (err) {
      return { ok: false, retry: true, code: 'network_error', message: String(err), retryAfterMs: 0 };
    }
    const text = await response.text().catch(() => '');
    if (response.ok) return { ok: true, retry: false, code: '', message: '', retryAfterMs: 0 };
    let body: { error?: string; message?: string } = {};
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      // Not the server's JSON (a proxy's page): the status says enough.
    }
    const status = response.status;
    return {
      ok: false,
      // 409 in_progress: the server still holds this key's first attempt; a retry gets its answer.
      retry: status === 409 || status === 429 || status >= 500,
      status,
      code: body.error ?? `http_${status}`,
      message: body.message ?? text.slice(0, 200),
      retryAfterMs: readRetryAfter(response.headers.get('retry-after')),
    };
  }

  /**
   * The page is hidden or going away: what is queued goes out in beacons, each under
   * maxBeaconBytes with a key of its own, and the batch in flight too, with its key, as its
   * request may not outlive the page (the server stores it once either way). What the browser
   * refuses (past its beacon quota) stays queued.
   */
  #beaconAll(): void {
    const inFlight = this.#inFlight;
    if (inFlight !== undefined && !inFlight.beaconed && inFlight.bytes <= this.#o.maxBeaconBytes && this.#beacon(inFlight)) inFlight.beaconed = true;
    while (this.#queue.length > 0) {
      const batch = this.#cut(this.#o.maxBeaconBytes);
      if (batch.count > 0 && this.#beacon(batch)) {
        this.counts.beaconed += batch.count;
        continue;
      }
      this.#requeue(batch);
      break;
    }
  }

  #beacon(batch: Batch): boolean {
    let url = `${this.#url}?idempotency_key=${batch.key}`;
    if (this.#o.apiKey !== undefined) url += `&api_key=${encodeURIComponent(this.#o.apiKey)}`;
    // A string goes as text/plain, which needs no CORS preflight while the page unloads.
    return navigator.sendBeacon(url, batch.body);
  }

  #requeue(batch: Batch): void {
    this.#queue.unshift(...batch.items);
    for (const item of batch.items) this.#queuedBytes += item.bytes;
    this.counts.queued = this.#queue.length;
  }

  #error(error: ClientError, refused = true): void {
    if (refused) this.counts.refused += error.events;
    try {
      this.#o.onError?.(error);
    } catch {
      // The caller's hook: its failure must not stop the sending.
    }
  }
}

export function createClient(options: ClientOptions): Client {
  return new IngestClient(options);
}
