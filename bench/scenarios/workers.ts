// Scenario 9: one task's cores. The 50-event arrays against WORKERS=1 and WORKERS=2, both servers
// free to run on every core (not pinned to the server core) while the load generator and the S3
// server share core 1 with them: how far a second worker thread scales one task on a 2-core host.
import os from 'node:os';
import { bodies } from '../lib/bodies.js';
import { compareVariants } from '../lib/measure.js';
import { lossless, type Scenario } from '../lib/scenario.js';

export const scenario: Scenario = {
  id: 'workers',
  title: '9. 50-event arrays, WORKERS=1 against WORKERS=2, on all cores',
  async run(ctx) {
    const cores = Array.from({ length: os.cpus().length }, (_, i) => i).join(',');
    const comparison = await compareVariants(ctx, bodies('array'), [
      { name: 'WORKERS=1', env: { WORKERS: '1' } },
      { name: 'WORKERS=2', env: { WORKERS: '2' } },
    ], cores);
    return {
      id: this.id,
      title: this.title,
      variants: comparison,
      settled: lossless(comparison.settled),
      notes: [`servers on cores ${cores}, beside the load generator and the S3 server (core 1): on a 2-core host a second worker competes with them, so this is what one task of that size gets, not a per-core figure`],
    };
  },
};
