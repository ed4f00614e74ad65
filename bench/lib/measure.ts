// One measured load run against a target, and the comparison of the server with its baselines
// (and any --target) in alternating rounds, so that drift of the machine over the run cancels out.
import { join } from 'node:path';
import type { Shaped } from './bodies.js';
import type { Context } from './context.js';
import { load, type LoadResult } from './load.js';
import { startProbe } from './probe.js';
import { lastObjectWrite, type Local, type Scrape, scrape, settle, startBaseline, startServer, storedBytes, type Target } from './stack.js';

export interface Figures {
  /** 2xx answers a second. */
  readonly rps: number;
  readonly eventsPerSec: number;
  /**
   * End to end: the events stored in S3 over the seconds from the start of each load to the last
   * object of its drain (every accepted event in S3), summed over the rounds. For a baseline, which
   * stores nothing, its 2xx events/s. Absent where nothing drained (scenario 7, a --target).
   */
  readonly e2eEventsPerSec?: number;
  /** The server only: mean seconds from the end of a load to the last object of its drain. */
  readonly drainSeconds?: number;
  /** Answers other than 2xx over all answers (503 queue_full, under load). */
  readonly share503: number;
  /** JSON bytes of the bodies answered 2xx (before gzip, in scenario 4); absent where the load does not know them (scenario 7). */
  readonly postedJsonBytes?: number;
  /** Milliseconds, over all answered requests; the median of the rounds. Absent where nothing timed them. */
  readonly latency?: { p50: number; p99: number; p999: number };
  /** Absent where the process is unknown (a --target without --target-pid). */
  readonly cpuSecondsPerMillionEvents?: number;
  readonly peakRssMiB?: number;
  /** The server only: bytes in S3 per event in S3, and the gzip ratio of its batches. */
  readonly s3BytesPerEvent?: number;
  readonly compressionRatio?: number;
  /** The server only: JSON bytes posted (and accepted) over the bytes of the objects in S3. */
  readonly postedToStored?: number;
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

export interface Round {
  load: LoadResult;
  /** When the load began, in microseconds on the monotonic clock (a CPU profile's clock). */
  loadStartedUs: number;
  cpuSeconds?: number;
  eventLoopP99Ms?: number;
  /** The server, drained: events stored from the start of the load to the end of its drain, and those seconds. */
  e2e?: { events: number; seconds: number };
}

/** What the drain after a load needs: the S3 server's directory, and what to stop first (a probe, which would keep adding events). */
export interface Drain {
  readonly s3Dir: string;
  readonly afterLoad?: () => Promise<void>;
}

/**
 * One load of `seconds` against `target`. For the server, with `drain`, also its drain: until every
 * event it accepted is in S3, timed by the last object written, so that the round gives the
 * end-to-end rate; its CPU then includes the drain's (gzip and PUTs of the tail).
 */
export async function measure(target: Target | Local, shaped: Shaped, seconds: number, connections: number, drain?: Drain): Promise<Round> {
  const server = 'proc' in target && target.name === 'server' ? target : undefined;
  const before = server ? await scrape(server) : undefined; // also resets the event-loop histogram
  const cpu = target.usage?.cpuSeconds();
  const result = await load(target.endpoint, shaped.request, seconds, connections);
  // When the load began: the generator's own start-up (wrk's script reads 160 MB of bodies) is not the server's time.
  const startedAt = Date.now() - result.seconds * 1000;
  const round: Round = { load: result, loadStartedUs: monotonicUs() - result.seconds * 1e6 };
  if (server) round.eventLoopP99Ms = (await scrape(server)).eventLoopP99Ms;
  await drain?.afterLoad?.();
  if (server && drain !== undefined) {
    const after = await settle(server, 300, before!.counters.accepted + result.ok * shaped.events);
    const inS3 = (s: Scrape) => s.counters.stored + s.counters.reuploaded;
    // The mtime of the last object: at least the load's length (an ACK_LEVEL=s3 load ends drained).
    const seconds = Math.max(result.seconds, (lastObjectWrite(drain.s3Dir) - startedAt) / 1000);
    round.e2e = { events: inS3(after) - inS3(before!), seconds };
  }
  if (cpu !== undefined) round.cpuSeconds = target.usage!.cpuSeconds() - cpu;
  return round;
}

/** Microseconds on the monotonic clock, the one V8's profile timestamps use on Linux. */
export const monotonicUs = (): number => Number(process.hrtime.bigint() / 1000n);

export function summarise(rounds: Round[], shaped: Shaped, peakRssBytes: number | undefined): Figures {
  const seconds = rounds.reduce((n, r) => n + r.load.seconds, 0);
  const ok = rounds.reduce((n, r) => n + r.load.ok, 0);
  const events = ok * shaped.events;
  const requests = rounds.reduce((n, r) => n + r.load.requests, 0);
  const drained = rounds.every((r) => r.e2e !== undefined);
  const e2e = drained ? { events: rounds.reduce((n, r) => n + r.e2e!.events, 0), seconds: rounds.reduce((n, r) => n + r.e2e!.seconds, 0) } : undefined;
  const median = (pick: (r: Round) => number) => {
    const values = rounds.map(pick).sort((a, b) => a - b);
    return values[Math.floor((values.length - 1) / 2)]!;
  };
  const loops = rounds.map((r) => r.eventLoopP99Ms).filter((v): v is number => v !== undefined);
  const cpu = rounds.every((r) => r.cpuSeconds !== undefined) ? rounds.reduce((n, r) => n + r.cpuSeconds!, 0) : undefined;
  return {
    rps: ok / seconds,
    eventsPerSec: events / seconds,
    ...(e2e === undefined ? {} : { e2eEventsPerSec: e2e.events / e2e.seconds, drainSeconds: (e2e.seconds - seconds) / rounds.length }),
    share503: requests === 0 ? 0 : rounds.reduce((n, r) => n + r.load.non2xx, 0) / requests,
    postedJsonBytes: ok * shaped.jsonBytesPerRequest,
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
 * over the scenario, DLQ re-uploads included) over the events it stored, and over the JSON bytes
 * posted; and the gzip ratio of its batches (its own histograms: JSON-lines bytes in, gzip bytes out).
 */
export function storage(bytes: number, final: Scrape, postedJsonBytes?: number): Pick<Figures, 's3BytesPerEvent' | 'compressionRatio' | 'postedToStored'> {
  const events = final.counters.stored + final.counters.reuploaded;
  return {
    ...(events > 0 ? { s3BytesPerEvent: bytes / events } : {}),
    ...(final.batchCompressedBytes > 0 ? { compressionRatio: final.batchBytes / final.batchCompressedBytes } : {}),
    ...(bytes > 0 && postedJsonBytes !== undefined ? { postedToStored: postedJsonBytes / bytes } : {}),
  };
}

export interface Comparison {
  readonly targets: Record<'noop' | 'parse' | 'server', Figures>;
  /** --target endpoints, by URL. */
  readonly outside: Record<string, Figures>;
  /** `e2eServerToParse`: the server's end-to-end events/s over the parse-only baseline's 2xx events/s. */
  readonly ratios: { serverToParse: number; e2eServerToParse: number; serverToNoop: number; parseToNoop: number };
  readonly settled: Settled;
}

/** Scenarios 1-4: noop, parse-only, the server and each --target, in turn, `rounds` times. */
export async function compare(ctx: Context, shaped: Shaped): Promise<Comparison> {
  const s3Before = storedBytes(ctx.s3.dir);
  const local = [await startBaseline('noop'), await startBaseline('parse'), await startServer(ctx.s3.endpoint, ctx.serverEnv)];
  try {
    const targets: Target[] = [...local, ...ctx.targets];
    const byTarget = new Map<Target, Round[]>(targets.map((t) => [t, []]));
    for (let round = 0; round < ctx.rounds; round++) {
      for (const target of targets) byTarget.get(target)!.push(await measure(target, shaped, ctx.seconds, ctx.connections, { s3Dir: ctx.s3.dir }));
    }
    const server = local[2];
    const final = await settle(server);
    const figuresOf = (t: Target) => summarise(byTarget.get(t)!, shaped, t.usage?.peakRssBytes());
    // A baseline stores nothing: what it answers is all it does, end to end.
    const baseline = (t: Target) => ({ ...figuresOf(t), e2eEventsPerSec: figuresOf(t).eventsPerSec });
    const serverFigures = figuresOf(server);
    const figures = {
      noop: baseline(local[0]),
      parse: baseline(local[1]),
      server: { ...serverFigures, ...storage(storedBytes(ctx.s3.dir) - s3Before, final, serverFigures.postedJsonBytes) },
    };
    const { counters } = final;
    return {
      targets: figures,
      outside: Object.fromEntries(ctx.targets.map((t) => [t.name, figuresOf(t)])),
      ratios: {
        serverToParse: figures.server.eventsPerSec / figures.parse.eventsPerSec,
        e2eServerToParse: figures.server.e2eEventsPerSec! / figures.parse.eventsPerSec,
        serverToNoop: figures.server.eventsPerSec / figures.noop.eventsPerSec,
        parseToNoop: figures.parse.eventsPerSec / figures.noop.eventsPerSec,
      },
      settled: { accepted: counters.accepted, stored: counters.stored, spilled: counters.spilled, dropped: counters.dropped },
    };
  } finally {
    for (const target of local) await target.proc.stop();
  }
}

/** One server setting beside others (scenario 8 and 9): its name, and the variables that make it. */
export interface Variant {
  readonly name: string;
  readonly env: Record<string, string>;
}

export interface VariantComparison {
  /** By variant name, in the order given; `acceptedP99Ms` from a probe beside the load (202s only). */
  readonly variants: Record<string, Figures & { acceptedP99Ms?: number }>;
  /** events/s of each variant over the first one's. */
  readonly ratios: Record<string, number>;
  /** End-to-end events/s of each variant over the first one's. */
  readonly e2eRatios: Record<string, number>;
  /** Summed over the variants' servers. */
  readonly settled: Settled;
}

/**
 * One server per variant, all started at once and loaded in turn, `rounds` times, like the
 * baselines in scenarios 1-4. A probe beside each load times the requests answered 202 (the load's
 * own percentiles also count fast 503s). `cores` pins the servers elsewhere than the server core.
 */
export async function compareVariants(ctx: Context, shaped: Shaped, variants: readonly Variant[], cores?: string): Promise<VariantComparison> {
  const servers: Local[] = [];
  // Each variant writes under its own key prefix, so that its objects' bytes can be told apart.
  const prefixes = variants.map((_, i) => `variant-${Date.now()}-${i}`);
  try {
    for (const [i, v] of variants.entries()) servers.push(await startServer(ctx.s3.endpoint, { ...ctx.serverEnv, ...v.env, S3_PREFIX: prefixes[i]! }, cores));
    const rounds = servers.map((): Round[] => []);
    const probed = servers.map((): number[] => []);
    for (let round = 0; round < ctx.rounds; round++) {
      for (const [i, server] of servers.entries()) {
        const probe = startProbe(server.url, shaped.request);
        const afterLoad = async () => {
          const { p99 } = await probe.stop();
          if (p99 !== undefined) probed[i]!.push(p99);
        };
        rounds[i]!.push(await measure(server, shaped, ctx.seconds, ctx.connections, { s3Dir: ctx.s3.dir, afterLoad }));
      }
    }
    const finals: Scrape[] = [];
    for (const server of servers) finals.push(await settle(server));
    const figures = variants.map((_, i) => {
      const p99s = probed[i]!.sort((a, b) => a - b);
      const summary = summarise(rounds[i]!, shaped, servers[i]!.proc.peakRssBytes());
      return {
        ...summary,
        ...storage(storedBytes(join(ctx.s3.dir, 'bench', prefixes[i]!)), finals[i]!, summary.postedJsonBytes),
        ...(p99s.length === 0 ? {} : { acceptedP99Ms: p99s[Math.floor((p99s.length - 1) / 2)]! }),
      };
    });
    const sum = (pick: (f: Scrape) => number) => finals.reduce((n, f) => n + pick(f), 0);
    return {
      variants: Object.fromEntries(variants.map((v, i) => [v.name, figures[i]!])),
      ratios: Object.fromEntries(variants.map((v, i) => [v.name, figures[i]!.eventsPerSec / figures[0]!.eventsPerSec])),
      e2eRatios: Object.fromEntries(variants.map((v, i) => [v.name, figures[i]!.e2eEventsPerSec! / figures[0]!.e2eEventsPerSec!])),
      settled: { accepted: sum((f) => f.counters.accepted), stored: sum((f) => f.counters.stored), spilled: sum((f) => f.counters.spilled), dropped: sum((f) => f.counters.dropped) },
    };
  } finally {
    for (const server of servers) await server.proc.stop();
  }
}
