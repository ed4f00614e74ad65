// A light probe beside the main load: one request at a time, timing the ones answered 202, and
// noting whether 503s carry Retry-After. It answers "what latency does an accepted request see".
import type { Request } from './load.js';
import { event, SEED } from './event.js';

export interface ProbeResult {
  readonly accepted: number;
  readonly refused: number;
  readonly refusedWithRetryAfter: number;
  /** Milliseconds, over the 202s; undefined when none was accepted. */
  readonly p50: number | undefined;
  readonly p99: number | undefined;
}

/** `p50 1.23 ms, p99 4.56 ms`, or why there is none. */
export function describe(probed: ProbeResult): string {
  return probed.p50 === undefined || probed.p99 === undefined ? 'none accepted' : `p50 ${probed.p50.toFixed(2)} ms, p99 ${probed.p99.toFixed(2)} ms`;
}

/** Single events (a stream of their own, not the load's), unless `request` gives the bodies and headers to send (in turn). */
export function startProbe(url: string, request?: Request): { stop(): Promise<ProbeResult> } {
  const latencies: number[] = [];
  let refused = 0;
  let withRetryAfter = 0;
  let running = true;
  const loop = (async () => {
    for (let i = 0; running; i++) {
      const started = performance.now();
      try {
        const body = request === undefined ? event(i, SEED + 1) : new Uint8Array(request.bodies[i % request.bodies.length]!);
        const headers = request?.headers ?? { 'content-type': 'application/json' };
        const res = await fetch(`${url}/v1/events`, { method: 'POST', body, headers, signal: AbortSignal.timeout(10_000) });
        await res.arrayBuffer();
        if (res.status === 202) latencies.push(performance.now() - started);
        else if (res.status === 503) {
          refused++;
          if (res.headers.get('retry-after') !== null) withRetryAfter++;
        }
      } catch {
        refused++;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      latencies.sort((a, b) => a - b);
      const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
      return { accepted: latencies.length, refused, refusedWithRetryAfter: withRetryAfter, p50: at(0.5), p99: at(0.99) };
    },
  };
}
