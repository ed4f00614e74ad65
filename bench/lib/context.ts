// What every scenario and measurement is given: the run's settings and the S3 server beside it.
import type { Target } from './stack.js';

export interface Context {
  /** Length of one measured load run. */
  readonly seconds: number;
  /** Alternating rounds per target, for the comparisons. */
  readonly rounds: number;
  readonly connections: number;
  readonly s3: { readonly endpoint: string; readonly port: number; readonly dir: string };
  /** Server settings other than the defaults, from --env. */
  readonly serverEnv: Record<string, string>;
  /** Other ingest endpoints (--target), loaded beside the baselines in scenarios 1-4. */
  readonly targets: readonly Target[];
}
