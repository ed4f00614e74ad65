// Idempotency-Key metrics (src/idempotency.ts): the table counts plain integers on the hot path,
// read here at each scrape.
import { Counter, Gauge, type Registry } from 'prom-client';
import { summedCounter } from './http.js';

/** What the table shows: the keys it holds, and what it has counted. */
export interface IdempotencyState {
  readonly size: number;
  readonly counts: { readonly replays: number; readonly reused: number; readonly inProgress: number; readonly evicted: number };
}

export function observeIdempotency(registry: Registry, table: IdempotencyState): void {
  new Gauge({ name: 'idempotency_keys', help: 'Idempotency-Key keys held (in flight or answered), against IDEMPOTENCY_MAX_KEYS', registers: [registry], collect() { this.set(table.size); } });
  summedCounter(registry, 'idempotency_replays_total', 'Requests answered with the answer of an earlier request with the same Idempotency-Key and body (Idempotent-Replayed: true); nothing stored', () => table.counts.replays);
  summedCounter(registry, 'idempotency_keys_evicted_total', 'Idempotency-Key keys forgotten before IDEMPOTENCY_WINDOW_SECONDS because IDEMPOTENCY_MAX_KEYS were held', () => table.counts.evicted);
  const reported = { body_differs: 0, in_progress: 0 };
  const reasons = { body_differs: () => table.counts.reused, in_progress: () => table.counts.inProgress };
  new Counter({
    name: 'idempotency_conflicts_total',
    help: 'Requests refused for their Idempotency-Key, by reason: body_differs (422 idempotency_key_reused), in_progress (409: the first request is not answered yet)',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      for (const reason of ['body_differs', 'in_progress'] as const) {
        const now = reasons[reason]();
        this.inc({ reason }, now - reported[reason]);
        reported[reason] = now;
      }
    },
  });
}
