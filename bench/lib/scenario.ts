// What every scenario gets and gives back.
import type { Comparison, Figures, Settled, VariantComparison } from './measure.js';
import type { Context } from './context.js';

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

/** Zero loss for a settled comparison: every accepted event left memory for S3 (or the DLQ, then S3). */
export function lossless(settled: Settled): Settled & { lossless: boolean } {
  return { ...settled, lossless: settled.accepted === settled.stored + settled.spilled && settled.dropped === 0 };
}

/** Scenarios 8 and 10: the load's own percentiles count fast 503s too; a probe beside it times 202s only. */
export function acceptedP99Note(comparison: VariantComparison): string {
  const each = Object.entries(comparison.variants).map(([name, x]) => `${name} ${x.acceptedP99Ms === undefined ? 'none accepted' : `${x.acceptedP99Ms.toFixed(1)} ms`}`);
  return `p99 of a request answered 202 (a probe beside the load, median of the rounds): ${each.join(', ')}`;
}
