// One measured load run against a target, and the comparison of the server with its baselines
// (and any --target) in alternating rounds, so that drift of the machine over the run cancels out.
import { load, type LoadResult, type Request } from './load.js';
import type { Context } from './scenario.js';
import { type Local, type Scrape, scrape, settle, startBaseline, startServer, storedBytes, type Target } from './stack.js';

export interface Figures {
  /** 2xx answers a second. */
  readonly rps: number;
  readonly eventsPerSec: number;
  /** Milliseconds, over all answered requests; the median of the rounds. Absent where nothing timed them. */
  readonly latency?: { p50: number; p99: number; p999: number };
  /** Absent where the process is unknown (a --target without --target-pid). */
  readonly cpuSecondsPerMillionEvents?: number;
  readonly peakRssMiB?: number;
  /** The server only: bytes in S3 per event in S3, and the gzip ratio of its batches. */
  readonly s3BytesPerEvent?: number;
  readonly compressionRatio?: number;
  /** The server only: event-loop delay p99 over the run, the worst round. */
  readonly eventLoopP99Ms?: number;
  readonly non2xx: number;
  readonly errors: number;
}

export interface Settled {
  readonly accepted: number;
  readonly stored: number;
  readonly spilled: number;
  readonly dropped: number;
}

interface Round {
  load: LoadResult;
  cpuSeconds?: number;
  eventLoopP99Ms?: number;
}

export async function measure(target: Target | Local, request: Request, seconds: number, connections: number): Promise<Round> {
  const server = 'proc' in target && target.name === 'server' ? target : undefined;
  if (server) await scrape(server); // resets the event-loop histogram
  const cpu = target.usage?.cpuSeconds();
  const result = await load(target.endpoint, request, seconds, connections);
  const round: Round = { load: result };
  if (cpu !== undefined) round.cpuSeconds = target.usage!.cpuSeconds() - cpu;
  if (server) round.eventLoopP99Ms = (await scrape(server)).eventLoopP99Ms;
  return round;
}

export function summarise(rounds: Round[], eventsPerRequest: number, peakRssBytes: number | undefined): Figures {
  const seconds = rounds.reduce((n, r) => n + r.load.seconds, 0);
  const ok = rounds.reduce((n, r) => n + r.load.ok, 0);
  const events = ok * eventsPerRequest;
  const median = (pick: (r: Round) => number) => {
    const values = rounds.map(pick).sort((a, b) => a - b);
    return values[Math.floor((values.length - 1) / 2)]!;
  };
  const loops = rounds.map((r) => r.eventLoopP99Ms).filter((v): v is number => v !== undefined);
  const cpu = rounds.every((r) => r.cpuSeconds !== undefined) ? rounds.reduce((n, r) => n + r.cpuSeconds!, 0) : undefined;
  return {
    rps: ok / seconds,
    eventsPerSec: events / seconds,
    latency: { p50: median((r) => r.load.latency.p50), p99: median((r) => r.load.latency.p99), p999: median((r) => r.load.latency.p999) },
    ...(cpu === undefined || events === 0 ? {} : { cpuSecondsPerMillionEvents: (cpu / events) * 1e6 }),
    ...(peakRssBytes === undefined ? {} : { peakRssMiB: peakRssBytes / 1048576 }),
    ...(loops.length > 0 ? { eventLoopP99Ms: Math.max(...loops) } : {}),
    non2xx: rounds.reduce((n, r) => n + r.load.non2xx, 0),
    errors: rounds.reduce((n, r) => n + r.load.errors, 0),
  };
}

/**
 * What the server's objects cost in S3, once it settled: `bytes` (what the S3 server's files grew by
 * over the scenario, DLQ re-uploads included) over the events it stored, and the gzip ratio of its
 * batches (its own histograms: JSON-lines bytes in, gzip bytes out).
 */
export function storage(bytes: number, final: Scrape): Pick<Figures, 's3BytesPerEvent' | 'compressionRatio'> {
  const events = final.counters.stored + final.counters.reuploaded;
  return {
    ...(events > 0 ? { s3BytesPerEvent: bytes / events } : {}),
    ...(final.batchCompressedBytes > 0 ? { compressionRatio: final.batchBytes / final.batchCompressedBytes } : {}),
  };
}

export interface Comparison {
  readonly targets: Record<'noop' | 'parse' | 'server', Figures>;
  /** --target endpoints, by URL. */
  readonly outside: Record<string, Figures>;
  readonly ratios: { serverToParse: number; serverToNoop: number; parseToNoop: number };
  readonly settled: Settled;
}

/** Scenarios 1-4: noop, parse-only, the server and each --target, in turn, `rounds` times. */
export async function compare(ctx: Context, request: Request, eventsPerRequest: number): Promise<Comparison> {
  const s3Before = storedBytes(ctx.s3.dir);
  const local = [await startBaseline('noop'), await startBaseline('parse'), await startServer(ctx.s3.endpoint, ctx.serverEnv)];
  try {
    const targets: Target[] = [...local, ...ctx.targets];
    const byTarget = new Map<Target, Round[]>(targets.map((t) => [t, []]));
    for (let round = 0; round < ctx.rounds; round++) {
      for (const target of targets) byTarget.get(target)!.push(await measure(target, request, ctx.seconds, ctx.connections));
    }
    const server = local[2];
    const final = await settle(server);
    const figuresOf = (t: Target) => summarise(byTarget.get(t)!, eventsPerRequest, t.usage?.peakRssBytes());
    const figures = {
      noop: figuresOf(local[0]),
      parse: figuresOf(local[1]),
      server: { ...figuresOf(server), ...storage(storedBytes(ctx.s3.dir) - s3Before, final) },
    };
    const { counters } = final;
    return {
      targets: figures,
      outside: Object.fromEntries(ctx.targets.map((t) => [t.name, figuresOf(t)])),
      ratios: {
        serverToParse: figures.server.eventsPerSec / figures.parse.eventsPerSec,
        serverToNoop: figures.server.eventsPerSec / figures.noop.eventsPerSec,
        parseToNoop: figures.parse.eventsPerSec / figures.noop.eventsPerSec,
      },
      settled: { accepted: counters.accepted, stored: counters.stored, spilled: counters.spilled, dropped: counters.dropped },
    };
  } finally {
    for (const target of local) await target.proc.stop();
  }
}
