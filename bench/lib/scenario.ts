// What every scenario gets and gives back, and the request bodies they send.
import { gzipSync } from 'node:zlib';
import type { Comparison, Figures, Settled } from './measure.js';
import type { Request } from './load.js';

export interface Context {
  /** Length of one measured load run. */
  readonly seconds: number;
  /** Alternating rounds per target, for the comparisons. */
  readonly rounds: number;
  readonly connections: number;
  readonly s3: { readonly endpoint: string; readonly port: number };
  /** Server settings other than the defaults, from --env. */
  readonly serverEnv: Record<string, string>;
}

export interface Result {
  readonly id: string;
  readonly title: string;
  /** Scenarios 1-4: the server beside its baselines. */
  readonly comparison?: Comparison;
  /** Scenarios 5-7: the server alone, under a condition. */
  readonly server?: Figures & Record<string, unknown>;
  /** Where the accepted events went; `lossless` is the zero-loss verdict. */
  readonly settled: Settled & { readonly lossless: boolean };
  readonly notes: readonly string[];
}

export interface Scenario {
  readonly id: string;
  readonly title: string;
  run(ctx: Context): Promise<Result>;
}

/** A ~300-byte analytics event, different each time. */
export function event(i: number): string {
  return JSON.stringify({
    type: 'page_view',
    event_id: `e-${1_000_000 + i}`,
    user_id: `u_${(1_000_003 * i) % 9_999_991}`,
    session_id: `s_${(i * 7919).toString(36).padStart(10, '0')}`,
    ts: 1_800_000_000_000 + i,
    url: `https://shop.example.com/products/${i % 997}?ref=home&campaign=winter`,
    referrer: 'https://www.example.com/',
    device: { os: 'Android 14', browser: 'Chrome 131', screen: '412x915' },
    props: { price: 19.99 + (i % 50), currency: 'EUR', qty: 1 + (i % 3) },
  });
}

const events50 = Array.from({ length: 50 }, (_, i) => event(i));

export const BODIES: Record<'single' | 'array' | 'ndjson' | 'gzip', { request: Request; events: number }> = {
  single: { request: { body: Buffer.from(event(0)), headers: { 'content-type': 'application/json' } }, events: 1 },
  array: { request: { body: Buffer.from(`[${events50.join(',')}]`), headers: { 'content-type': 'application/json' } }, events: 50 },
  ndjson: { request: { body: Buffer.from(`${events50.join('\n')}\n`), headers: { 'content-type': 'application/x-ndjson' } }, events: 50 },
  gzip: {
    request: { body: gzipSync(`[${events50.join(',')}]`), headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' } },
    events: 50,
  },
};

/** Zero loss for a settled comparison: every accepted event left memory for S3 (or the DLQ, then S3). */
export function lossless(settled: Settled): Settled & { lossless: boolean } {
  return { ...settled, lossless: settled.accepted === settled.stored + settled.spilled && settled.dropped === 0 };
}
