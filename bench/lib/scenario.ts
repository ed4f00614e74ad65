// What every scenario gets and gives back, and the request bodies they send.
import { gzipSync } from 'node:zlib';
import type { Comparison, Figures, Settled, VariantComparison } from './measure.js';
import type { Context } from './context.js';
import { event } from './event.js';
import type { Request } from './load.js';

export interface Result {
  readonly id: string;
  readonly title: string;
  /** Scenarios 1-4: the server beside its baselines. */
  readonly comparison?: Comparison;
  /** Scenarios 8-9: the server under different settings, the first one the reference. */
  readonly variants?: VariantComparison;
  /** Scenarios 5-7: the server alone, under a condition. */
  readonly server?: Figures & Record<string, unknown>;
  /** Where the accepted events went; `lossless` is the zero-loss verdict. */
  readonly settled: Settled & { readonly lossless: boolean };
  readonly notes: readonly string[];
}

export interface Scenario {
  readonly id: string;
  readonly title: string;
  /** Several results where one scenario makes several comparisons (scenario 10: one per connection count). */
  run(ctx: Context): Promise<Result | readonly Result[]>;
}

/**
 * Distinct bodies cycled through by the load: every event in the server's batches different, as
 * in real traffic. Sending one body over and over would let gzip find each event again in its
 * 32 KiB window and make objects in S3 5 to 11 times smaller than real ones.
 */
const SINGLE_BODIES = 1000; // 1000 x ~350 bytes: far more than the window
const BATCH_BODIES = 100; // 5000 events: a default batch of distinct events
const batches = Array.from({ length: BATCH_BODIES }, (_, b) => Array.from({ length: 50 }, (_, i) => event(b * 50 + i)));
const json = { 'content-type': 'application/json' };

export const BODIES: Record<'single' | 'array' | 'ndjson' | 'gzip', { request: Request; events: number }> = {
  single: { request: { bodies: Array.from({ length: SINGLE_BODIES }, (_, i) => Buffer.from(event(i))), headers: json }, events: 1 },
  array: { request: { bodies: batches.map((events) => Buffer.from(`[${events.join(',')}]`)), headers: json }, events: 50 },
  ndjson: { request: { bodies: batches.map((events) => Buffer.from(`${events.join('\n')}\n`)), headers: { 'content-type': 'application/x-ndjson' } }, events: 50 },
  gzip: {
    request: { bodies: batches.map((events) => gzipSync(`[${events.join(',')}]`)), headers: { ...json, 'content-encoding': 'gzip' } },
    events: 50,
  },
};

/** Zero loss for a settled comparison: every accepted event left memory for S3 (or the DLQ, then S3). */
export function lossless(settled: Settled): Settled & { lossless: boolean } {
  return { ...settled, lossless: settled.accepted === settled.stored + settled.spilled && settled.dropped === 0 };
}

/** Scenarios 8 and 10: the load's own percentiles count fast 503s too; a probe beside it times 202s only. */
export function acceptedP99Note(comparison: VariantComparison): string {
  const each = Object.entries(comparison.variants).map(([name, x]) => `${name} ${x.acceptedP99Ms === undefined ? 'none accepted' : `${x.acceptedP99Ms.toFixed(1)} ms`}`);
  return `p99 of a request answered 202 (a probe beside the load, median of the rounds): ${each.join(', ')}`;
}
