// Scenario 10: group commit. ACK_LEVEL=disk against memory at 4, 64 and 256 connections, at
// WAL_SYNC_INTERVAL_MS 0, 1 and 2: how much of memory's throughput a 202 that survives SIGKILL
// keeps, by how many requests are in flight to share a write, and which window serves it best.
// One comparison per connection count, so that each ratio is to memory at the same count.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bodies } from '../lib/bodies.js';
import { compareVariants } from '../lib/measure.js';
import { acceptedP99Note, lossless, type Result, type Scenario } from '../lib/scenario.js';

/** Few requests in flight leave each write few records to share; many leave it many. */
const CONNECTIONS = [4, 64, 256] as const;
const INTERVALS_MS = ['0', '1', '2'] as const;

export const scenario: Scenario = {
  id: 'group-commit',
  title: '10. group commit: ACK_LEVEL=disk against memory at 4, 64 and 256 connections',
  async run(ctx) {
    const results: Result[] = [];
    for (const [i, connections] of CONNECTIONS.entries()) {
      const comparison = await compareVariants({ ...ctx, connections }, bodies('array'), [
        { name: 'ACK_LEVEL=memory', env: {} },
        // Each WAL on this machine's disk, under the system temp directory, in a directory of its own.
        ...INTERVALS_MS.map((ms) => ({ name: `ACK_LEVEL=disk, WAL_SYNC_INTERVAL_MS=${ms}`, env: { ACK_LEVEL: 'disk', WAL_SYNC_INTERVAL_MS: ms, WAL_DIR: mkdtempSync(join(tmpdir(), 'bench-wal-')) } })),
      ]);
      results.push({
        id: this.id,
        // 10a, 10b, 10c: a group of bars each in the chart.
        title: `10${'abc'[i]}. group commit, 50-event arrays from ${connections} connections`,
        variants: comparison,
        settled: lossless(comparison.settled),
        notes: [
          `${connections} connections (not --connections); ratios are to ACK_LEVEL=memory at ${connections} connections in the same rounds`,
          acceptedP99Note(comparison),
        ],
      });
    }
    return results;
  },
};
