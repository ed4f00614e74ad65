// The request bodies every scenario sends, for the server and the baselines alike, drawn from the
// seeded event generator (event.ts): the same bodies in every run.
import { gzipSync } from 'node:zlib';
import { event } from './event.js';
import type { Request } from './load.js';

/** A request shape of scenarios 1 to 4 (and the 50-event arrays the others send). */
export type Shape = 'single' | 'array' | 'ndjson' | 'gzip';

export interface Shaped {
  readonly request: Request;
  /** Events in each body. */
  readonly events: number;
  /** Mean JSON bytes of a body (before gzip, in scenario 4): what "bytes posted" counts. */
  readonly jsonBytesPerRequest: number;
}

/**
 * Distinct bodies, cycled through by the load: every event in the server's batches different, as
 * in real traffic. Sending one body over and over would let gzip find each event again in its
 * 32 KiB window and make objects in S3 5 to 11 times smaller than real ones. 10,000 bodies of
 * each shape: 10,000 single events, or 500,000 events in 50-event bodies (about 160 MB, built
 * only for the shapes a run uses, in a few seconds).
 */
export const DISTINCT_BODIES = 10_000;
const PER_BATCH = 50;
const json = { 'content-type': 'application/json' };
const built = new Map<Shape, Shaped>();
// The events of `count` 50-event bodies, by count: made once for the array, NDJSON and gzip shapes.
const batchEvents = new Map<number, string[][]>();

function batches(count: number): string[][] {
  let events = batchEvents.get(count);
  if (events === undefined) batchEvents.set(count, (events = Array.from({ length: count }, (_, b) => Array.from({ length: PER_BATCH }, (_, i) => event(b * PER_BATCH + i)))));
  return events;
}

/** `count` distinct bodies of a shape (a test asks for few; a run for DISTINCT_BODIES, through bodies()). */
export function buildBodies(shape: Shape, count: number): Shaped {
  const shaped = (texts: string[], headers: Record<string, string>, encode: (text: string) => Buffer = Buffer.from): Shaped => ({
    request: { bodies: texts.map(encode), headers },
    events: shape === 'single' ? 1 : PER_BATCH,
    jsonBytesPerRequest: texts.reduce((n, text) => n + Buffer.byteLength(text), 0) / texts.length,
  });
  switch (shape) {
    case 'single':
      return shaped(Array.from({ length: count }, (_, i) => event(i)), json);
    case 'array':
      return shaped(batches(count).map((events) => `[${events.join(',')}]`), json);
    case 'ndjson':
      return shaped(batches(count).map((events) => `${events.join('\n')}\n`), { 'content-type': 'application/x-ndjson' });
    case 'gzip':
      return shaped(batches(count).map((events) => `[${events.join(',')}]`), { ...json, 'content-encoding': 'gzip' }, (text) => gzipSync(text));
  }
}

/** The bodies of a shape, built on first use and kept for the rest of the run. */
export function bodies(shape: Shape): Shaped {
  let shaped = built.get(shape);
  if (shaped === undefined) built.set(shape, (shaped = buildBodies(shape, DISTINCT_BODIES)));
  return shaped;
}
