// The odd clients of the chaos soak, beside the normal acking load: a padded client (one small
// event inside a body of 256 KB to 1 MB of whitespace) and a slow client (a body dripped a few
// bytes at a time over a raw socket). Each sends one request at a time, so both stay bounded in
// count; every request is bounded in time. Their event ids go into the acking client's sets, so
// the audit counts their 202s like any other.
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';
import type { AckingClient } from '../harness/zero-loss.js';
import type { Random } from './random.js';

// Under MAX_BODY_BYTES (1 MiB by default): these must be accepted, not refused as too large.
const PAD_MIN_BYTES = 256 * 1024;
const PAD_MAX_BYTES = 1_000_000;
const REQUEST_TIMEOUT_MS = 15_000;

export interface OddClientStats {
  sent: number;
  /** Outcome counts, as the acking client's: `202`, `503 shutting_down`, `ECONNRESET`, ... */
  outcomes: Map<string, number>;
}

export class OddClients {
  readonly padded: OddClientStats = { sent: 0, outcomes: new Map() };
  readonly slow: OddClientStats = { sent: 0, outcomes: new Map() };
  readonly #stop = new AbortController();
  readonly #whitespace: string;

  /** `url()` is the live server's, undefined between two lives. */
  constructor(
    private readonly load: AckingClient,
    private readonly random: Random,
    private readonly url: () => string | undefined,
  ) {
    // Every kind of JSON whitespace; line breaks inside an event are stored as spaces.
    const ws = [' ', ' ', ' ', '\t', '\n', '\r\n'];
    const pad = this.random.fork('whitespace');
    this.#whitespace = Array.from({ length: PAD_MAX_BYTES }, () => ws[pad.between(0, ws.length - 1)]).join('').slice(0, PAD_MAX_BYTES);
  }

  async run(): Promise<void> {
    await Promise.all([this.#paddedLoop(this.random.fork('padded')), this.#slowLoop(this.random.fork('slow'))]);
  }

  stop(): void {
    this.#stop.abort();
  }

  async #paddedLoop(random: Random): Promise<void> {
    const signal = this.#stop.signal;
    for (let n = 0; !signal.aborted; n++) {
      await sleep(random.between(300, 2000), undefined, { signal }).catch(() => {});
      const url = this.url();
      if (signal.aborted || url === undefined) continue;
      const id = `${this.load.runId}-padded-${n}`;
      const size = random.between(PAD_MIN_BYTES, PAD_MAX_BYTES - 100);
      // Padding around the event and inside it, between its tokens.
      const cuts = [random.between(0, size), random.between(0, size), random.between(0, size)].sort((a, b) => a - b);
      const ws = (from: number, to: number) => this.#whitespace.slice(from, to);
      const text = `${ws(0, cuts[0]!)}{${ws(cuts[0]!, cuts[1]!)}"id":${ws(cuts[1]!, cuts[2]!)}${JSON.stringify(id)},"kind":"padded"}${ws(cuts[2]!, size)}`;
      const gzip = random.chance(0.3);
      const headers: Record<string, string> = { 'content-type': random.chance(0.5) ? 'application/json' : 'text/plain' };
      if (gzip) headers['content-encoding'] = 'gzip';
      this.padded.sent++;
      let outcome: string;
      try {
        const res = await fetch(`${url}/v1/events`, {
          method: 'POST',
          body: gzip ? new Uint8Array(gzipSync(text)) : text,
          headers,
          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        });
        const answer = (await res.json()) as { error?: string };
        outcome = res.status === 202 ? '202' : `${res.status} ${answer.error ?? ''}`.trim();
        if (res.status === 202) this.load.acked.add(id);
      } catch (err) {
        outcome = failure(err);
        this.load.uncertain.add(id);
      }
      count(this.padded.outcomes, outcome);
    }
  }

  async #slowLoop(random: Random): Promise<void> {
    const signal = this.#stop.signal;
    for (let n = 0; !signal.aborted; n++) {
      await sleep(random.between(500, 3000), undefined, { signal }).catch(() => {});
      const url = this.url();
      if (signal.aborted || url === undefined) continue;
      const id = `${this.load.runId}-slow-${n}`;
      this.slow.sent++;
      const outcome = await dripPost(Number(new URL(url).port), `{"id":${JSON.stringify(id)},"kind":"slow"}`, random.between(1, 4), random.between(20, 150));
      if (outcome === '202') this.load.acked.add(id);
      else if (!outcome.startsWith('4') && !outcome.startsWith('5')) this.load.uncertain.add(id);
      count(this.slow.outcomes, outcome);
    }
  }
}

/** POSTs `body` over a raw socket, `bytes` at a time every `everyMs`; resolves with the outcome. */
async function dripPost(port: number, body: string, bytes: number, everyMs: number): Promise<string> {
  const socket = net.connect(port, '127.0.0.1');
  let answer = '';
  socket.setEncoding('latin1').on('data', (data: string) => (answer += data));
  const ended = new Promise<string>((resolve) => {
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.message === 'timeout' ? 'timeout' : (err.code ?? err.name)));
    socket.on('close', () => resolve(statusOf(answer) ?? 'closed without an answer'));
  });
  const timer = setTimeout(() => socket.destroy(new Error('timeout')), REQUEST_TIMEOUT_MS);
  try {
    const head = `POST /v1/events HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n`;
    socket.write(head);
    for (let at = 0; at < body.length && !socket.destroyed; at += bytes) {
      await sleep(everyMs);
      socket.write(body.slice(at, at + bytes));
    }
    // The answer is complete once its body is: uWS may keep the connection open.
    for (let i = 0; i < REQUEST_TIMEOUT_MS / 20 && !socket.destroyed && !complete(answer); i++) await sleep(20);
    if (complete(answer)) socket.destroy();
    return await ended;
  } finally {
    clearTimeout(timer);
  }
}

/** `202`, or `503 shutting_down`: the status and the JSON error, as the acking client counts them. */
function statusOf(answer: string): string | undefined {
  const status = /^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1];
  if (status === undefined || !complete(answer)) return undefined;
  if (status === '202') return status;
  const error = /"error":"([a-z_]+)"/.exec(answer)?.[1];
  return error === undefined ? status : `${status} ${error}`;
}

function complete(answer: string): boolean {
  const headEnd = answer.indexOf('\r\n\r\n');
  if (headEnd === -1) return false;
  const length = /\r\ncontent-length: *(\d+)/i.exec(answer.slice(0, headEnd))?.[1];
  return length !== undefined && answer.length - headEnd - 4 >= Number(length);
}

function failure(err: unknown): string {
  const e = err as Error & { cause?: { code?: string } };
  return e.name === 'TimeoutError' ? 'timeout' : (e.cause?.code ?? e.name);
}

function count(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}
