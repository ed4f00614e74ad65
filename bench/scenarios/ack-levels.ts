// Scenario 8: the 50-event arrays at each ACK_LEVEL, three servers taking turns in the same rounds:
// what a 202 that survives SIGKILL (disk) or waits for S3 (s3) costs against memory.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bodies } from '../lib/bodies.js';
import { compareVariants } from '../lib/measure.js';
import { acceptedP99Note, lossless, type Scenario } from '../lib/scenario.js';

/** ACK_LEVEL=s3 answers once the batch is cut and stored: with 64 connections of 50 events a batch
 * never fills its 5,000 events, so each waits BATCH_MAX_AGE_MS; 5 s (the default) would time the
 * load out. 1 s is what an interactive client would be given. */
const S3_BATCH_AGE_MS = '1000';

export const scenario: Scenario = {
  id: 'ack',
  title: '8. 50-event arrays at ACK_LEVEL memory, disk and s3',
  async run(ctx) {
    const comparison = await compareVariants(ctx, bodies('array'), [
      { name: 'ACK_LEVEL=memory', env: {} },
      // The WAL on this machine's disk, under the system temp directory.
      { name: 'ACK_LEVEL=disk', env: { ACK_LEVEL: 'disk', WAL_DIR: mkdtempSync(join(tmpdir(), 'bench-wal-')) } },
      { name: `ACK_LEVEL=s3, BATCH_MAX_AGE_MS=${S3_BATCH_AGE_MS}`, env: { ACK_LEVEL: 's3', BATCH_MAX_AGE_MS: S3_BATCH_AGE_MS } },
    ]);
    return {
      id: this.id,
      title: this.title,
      variants: comparison,
      settled: lossless(comparison.settled),
      notes: [
        'ratios are to ACK_LEVEL=memory in the same rounds',
        acceptedP99Note(comparison),
      ],
    };
  },
};
