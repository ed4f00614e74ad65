// Scenarios 1-4: one body format each, the server beside the no-op and parse-only baselines
// and any --target.
import { compare } from '../lib/measure.js';
import { bodies } from '../lib/bodies.js';
import { lossless, type Scenario } from '../lib/scenario.js';

const FORMATS = [
  ['single', '1. one ~300-byte event per request'],
  ['array', '2. 50 events per request as a JSON array'],
  ['ndjson', '3. 50 events per request as NDJSON'],
  ['gzip', '4. 50 events per request, a gzip-encoded JSON array'],
] as const;

export const scenarios: Scenario[] = FORMATS.map(([id, title]) => ({
  id,
  title,
  async run(ctx) {
    const comparison = await compare(ctx, bodies(id));
    return { id, title, comparison, settled: lossless(comparison.settled), notes: [] };
  },
}));
