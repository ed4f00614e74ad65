// Micro-benchmark of the encode path: requests -> batches (the real Batcher and encodeLines) ->
// gzip, per GZIP_LEVEL and BATCH_MAX_EVENTS. `npm run bench:encode`. CPU time on this core only.
import { gzipSync } from 'node:zlib';
import { Channel } from '../src/channel.js';
import { parseEvents, Rejection } from '../src/ingest/body.js';
import { type Batch, Batcher, encodeLines } from '../src/upload/batcher.js';
import { event } from './lib/scenario.js';

const TOTAL_EVENTS = 100_000;
// Every event different, as in real traffic: repeats would flatter gzip.
const requests = Array.from({ length: TOTAL_EVENTS / 50 }, (_, r) => {
  const parsed = parseEvents(Buffer.from(`[${Array.from({ length: 50 }, (_, i) => event(r * 50 + i)).join(',')}]`), 'json', { maxEvents: 1000, maxDepth: 64 });
  if (parsed instanceof Rejection) throw new Error(parsed.message);
  return parsed;
});

function batches(maxEvents: number): { batches: Batch[]; msPerMillion: number } {
  const out: Batch[] = [];
  const channel = new Channel(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  const batcher = new Batcher(channel, { hasRoom: () => true, submit: (b) => out.push(b) }, { maxEvents, maxBytes: 1 << 30, maxAgeMs: 3_600_000, prefix: 'raw', instanceId: 'bench' });
  const started = performance.now();
  for (const parsed of requests) {
    channel.tryPush({ receivedAt: Date.now(), body: parsed.body, spans: parsed.spans, count: 50, bytes: parsed.bytes });
    batcher.drain();
  }
  batcher.flush();
  return { batches: out, msPerMillion: ((performance.now() - started) / TOTAL_EVENTS) * 1e6 };
}

const rows = ['| BATCH_MAX_EVENTS | GZIP_LEVEL | batch ms/M events | encode ms/M events | gzip ms/M events | gzip MB/s | ratio | object KiB |', '|---:|---:|---:|---:|---:|---:|---:|---:|'];
for (const maxEvents of [500, 5000, 20000]) {
  const built = batches(maxEvents);
  let started = performance.now();
  const encoded = built.batches.map(encodeLines);
  const encodeMs = performance.now() - started;
  const raw = encoded.reduce((n, b) => n + b.length, 0);
  for (const level of [1, 6, 9]) {
    started = performance.now();
    const gz = encoded.map((b) => gzipSync(b, { level }));
    const gzipMs = performance.now() - started;
    const compressed = gz.reduce((n, b) => n + b.length, 0);
    rows.push(
      `| ${maxEvents} | ${level} | ${built.msPerMillion.toFixed(0)} | ${((encodeMs / TOTAL_EVENTS) * 1e6).toFixed(0)} | ${((gzipMs / TOTAL_EVENTS) * 1e6).toFixed(0)} | ${(raw / 1e6 / (gzipMs / 1000)).toFixed(0)} | ${(raw / compressed).toFixed(1)} | ${(compressed / gz.length / 1024).toFixed(0)} |`,
    );
  }
}
process.stdout.write(`Encode path, ${TOTAL_EVENTS} distinct events of ~${Math.round(requests[0]!.bytes / 50)} bytes, Node ${process.version}:\n\n${rows.join('\n')}\n`);
