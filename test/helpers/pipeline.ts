// What the pipeline tests build alike: small pipeline options and a request's entry from event texts.
import type { Entry } from '../../src/channel.js';
import type { PipelineOptions } from '../../src/pipeline.js';

/** Small bounds, a batch every `maxEvents` events, no age cut within a test. */
export function pipelineOptions(maxEvents: number): PipelineOptions {
  return {
    channelMaxEvents: 1000,
    channelMaxBytes: 1 << 20,
    batch: { maxEvents, maxBytes: 1 << 20, maxAgeMs: 60_000, prefix: 'raw', instanceId: 'unit' },
    upload: { concurrency: 2, maxQueuedBatches: 4, gzipLevel: 1, zstdLevel: 1 },
  };
}

/** One request whose events are these texts, received now. */
/** A JSON array of `parts` as a client sends it, and where each part is in it (an Entry's spans). */
export function jsonArray(parts: readonly string[]): { body: Buffer; spans: number[] } {
  const spans: number[] = [];
  let at = 1;
  for (const p of parts) {
    spans.push(at, at + p.length);
    at += p.length + 1;
  }
  return { body: Buffer.from(`[${parts.join(',')}]`), spans };
}

export function entry(...events: string[]): Entry {
  const body = Buffer.from(events.join(''));
  const spans: number[] = [];
  let at = 0;
  for (const e of events) spans.push(at, (at += Buffer.byteLength(e)));
  return { receivedAt: Date.now(), body, spans, count: events.length, bytes: body.length };
}
