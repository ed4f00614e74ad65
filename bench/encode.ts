// Micro-benchmark of the encode path: requests -> batches (the real Batcher and encodeLines) ->
// gzip or zstd (COMPRESSION), per GZIP_LEVEL / ZSTD_LEVEL and BATCH_MAX_EVENTS; and validation's cost per byte against the number of
// events in a body, which must not grow with it. `npm run bench:encode`. Timed in process CPU time
// (process.cpuUsage), not wall time, so that other work on a busy machine distorts it less.
import { constants, gzipSync, zstdCompressSync } from 'node:zlib';
import { memoryAcks } from '../src/acks.js';
import { Channel } from '../src/channel.js';
import { parseEvents, Rejection } from '../src/ingest/body.js';
import { type Batch, Batcher, encodeLines } from '../src/upload/batcher.js';
import { event } from './lib/event.js';

const TOTAL_EVENTS = 100_000;
// Every gzip level at the default batch size; the ends of the range elsewhere. zstd's fast levels,
// its default (3) and a slow one beside them.
const LEVELS: Record<number, number[]> = { 500: [1, 6, 9], 5000: [1, 2, 3, 4, 5, 6, 7, 8, 9], 20000: [1, 6, 9] };
const ZSTD_LEVELS: Record<number, number[]> = { 500: [1, 3], 5000: [1, 2, 3, 6, 9], 20000: [1, 3] };
type Codec = 'gzip' | 'zstd';
const squeeze: Record<Codec, (b: Buffer, level: number) => Buffer> = {
  gzip: (b, level) => gzipSync(b, { level }),
  zstd: (b, level) => zstdCompressSync(b, { params: { [constants.ZSTD_c_compressionLevel]: level } }),
};
// The best of a few runs: what another process takes from this core only ever adds to CPU time.
const REPEATS = 3;
// Every event different, as in real traffic: repeats would flatter gzip.
const requests = Array.from({ length: TOTAL_EVENTS / 50 }, (_, r) => {
  const parsed = parseEvents(Buffer.from(`[${Array.from({ length: 50 }, (_, i) => event(r * 50 + i)).join(',')}]`), 'json', { maxEvents: 1000, maxDepth: 64 });
  if (parsed instanceof Rejection) throw new Error(parsed.message);
  return parsed;
});

/** CPU milliseconds (user + system, all threads) of the cheapest of REPEATS calls, and its result. */
function timed<T>(fn: () => T): { cpuMs: number; result: T } {
  let best = { cpuMs: Infinity, result: undefined as T };
  for (let i = 0; i < REPEATS; i++) {
    const before = process.cpuUsage();
    const result = fn();
    const used = process.cpuUsage(before);
    const cpuMs = (used.user + used.system) / 1000;
    if (cpuMs < best.cpuMs) best = { cpuMs, result };
  }
  return best;
}

function batches(maxEvents: number): Batch[] {
  const out: Batch[] = [];
  const channel = new Channel(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  const batcher = new Batcher(channel, { hasRoom: () => true, submit: (b) => out.push(b) }, { maxEvents, maxBytes: 1 << 30, maxAgeMs: 3_600_000, prefix: 'raw', instanceId: 'bench' }, memoryAcks);
  for (const parsed of requests) {
    channel.tryPush({ receivedAt: Date.now(), body: parsed.body, spans: parsed.spans, count: 50, bytes: parsed.bytes });
    batcher.drain();
  }
  batcher.flush();
  return out;
}

const perMillion = (ms: number) => (ms / TOTAL_EVENTS) * 1e6;
const rows = [
  '| BATCH_MAX_EVENTS | COMPRESSION | level | batch CPU ms/M events | encode CPU ms/M events | compress CPU ms/M events | compress MB/s of CPU | ratio | bytes per event | object KiB | events per CPU s |',
  '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
];
// At the default batch size: gzip bytes and events per CPU second of the whole path, by level.
const atDefault = new Map<number, { compressed: number; eventsPerCpuSecond: number }>();
for (const [maxEvents, levels] of Object.entries(LEVELS).map(([k, v]) => [Number(k), v] as const)) {
  const built = timed(() => batches(maxEvents));
  const encoded = timed(() => built.result.map(encodeLines));
  const raw = encoded.result.reduce((n, b) => n + b.length, 0);
  const runs = [...levels.map((level) => ['gzip', level] as const), ...ZSTD_LEVELS[maxEvents]!.map((level) => ['zstd', level] as const)];
  for (const [codec, level] of runs) {
    const gz = timed(() => encoded.result.map((b) => squeeze[codec](b, level)));
    const compressed = gz.result.reduce((n, b) => n + b.length, 0);
    const eventsPerCpuSecond = TOTAL_EVENTS / ((built.cpuMs + encoded.cpuMs + gz.cpuMs) / 1000);
    if (maxEvents === 5000 && codec === 'gzip') atDefault.set(level, { compressed, eventsPerCpuSecond });
    rows.push(
      `| ${maxEvents} | ${codec} | ${level} | ${perMillion(built.cpuMs).toFixed(0)} | ${perMillion(encoded.cpuMs).toFixed(0)} | ${perMillion(gz.cpuMs).toFixed(0)} | ${(raw / 1e6 / (gz.cpuMs / 1000)).toFixed(0)} | ${(raw / compressed).toFixed(1)} | ${(compressed / TOTAL_EVENTS).toFixed(1)} | ${(compressed / gz.result.length / 1024).toFixed(0)} | ${Math.round(eventsPerCpuSecond).toLocaleString('en-US')} |`,
    );
  }
}
// Validation (parseEvents: UTF-8, the scanner, keeping the events) of bodies of more and more
// 100-byte events: its CPU per byte must not grow with the body, or a large body of small events
// buys CPU out of proportion (one search per event to the end of the body once made it quadratic).
const validation = ['| 100-byte events in the body | body KiB | parseEvents ns per byte | JSON.parse ns per byte |', '|---:|---:|---:|---:|'];
const perByte: number[] = [];
for (const count of [1_000, 5_000, 10_000]) {
  const body = Buffer.from(`[${Array.from({ length: count }, (_, i) => `{"a":"${String(i).padEnd(91, '.')}"}`).join(',')}]`);
  const rounds = 50;
  const ours = timed(() => {
    for (let i = 0; i < rounds; i++) if (parseEvents(body, 'json', { maxEvents: count, maxDepth: 64 }) instanceof Rejection) throw new Error('rejected');
  });
  const baseline = timed(() => {
    for (let i = 0; i < rounds; i++) JSON.parse(body.toString());
  });
  const ns = (ms: number) => (ms * 1e6) / rounds / body.length;
  perByte.push(ns(ours.cpuMs));
  validation.push(`| ${count.toLocaleString('en-US')} | ${(body.length / 1024).toFixed(0)} | ${ns(ours.cpuMs).toFixed(2)} | ${ns(baseline.cpuMs).toFixed(2)} |`);
}
const growth = perByte.at(-1)! / perByte[0]!;
const six = atDefault.get(6)!;
const [bestLevel, best] = [...atDefault].filter(([, x]) => x.compressed <= six.compressed * 1.1).sort(([, a], [, b]) => b.eventsPerCpuSecond - a.eventsPerCpuSecond)[0]!;
process.stdout.write(
  `Encode path, ${TOTAL_EVENTS} distinct events of ~${Math.round(requests[0]!.bytes / 50)} bytes, Node ${process.version}, CPU time (best of ${REPEATS}):\n\n${rows.join('\n')}\n\n` +
    `At BATCH_MAX_EVENTS 5000, GZIP_LEVEL ${bestLevel} makes the most events per CPU second (${Math.round(best.eventsPerCpuSecond).toLocaleString('en-US')}, ` +
    `${(best.eventsPerCpuSecond / six.eventsPerCpuSecond).toFixed(2)}x level 6) of the levels whose objects are within 10% of level 6's (${((best.compressed / six.compressed - 1) * 100).toFixed(1)}% larger).\n\n` +
    `Validation, CPU time (best of ${REPEATS}):\n\n${validation.join('\n')}\n\n` +
    `Per byte, the largest body costs ${growth.toFixed(2)}x the smallest: ${growth <= 1.5 ? 'flat, as it must be' : 'NOT FLAT: the cost per byte grows with the body'}.\n`,
);
if (growth > 1.5) process.exitCode = 1;
