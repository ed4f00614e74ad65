// What the batcher and the upload loop tell the durability layer (src/wal/): a cut, then where each batch ended up.
import type { Batch, Segment } from './batcher.js';

export type Settled = 'stored' | 'spilled' | 'dropped';

export interface Journal {
  /** A batch id fixed by where its first event is (the same after a restart), or undefined for the default. */
  batchId(first: Segment, firstReceivedAt: number): string | undefined;
  /** Records the cut; the batch's first PUT waits for what this returns (it never rejects). */
  cut(batch: Batch): Promise<void> | undefined;
  /** Once per batch: stored in S3, spilled to the DLQ, or dropped. */
  settled(batch: Batch, outcome: Settled): void;
}
