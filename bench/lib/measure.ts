// One measured load run against a target, and the comparison of the server with its baselines
// in alternating rounds, so that drift of the machine over the run cancels out.
import { load, type LoadResult, type Request } from './load.js';
import { scrape, settle, startBaseline, startServer, type Target } from './stack.js';

export interface Figures {
  /** 2xx answers a second. */
  readonly rps: number;
  readonly eventsPerSec: number;
  /** Milliseconds, over all answered requests; the median of the rounds. */
  readonly latency: { p50: number; p99: number; p999: number };
  readonly cpuSecondsPerMillionEvents: number;
  readonly peakRssMiB: number;
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
  cpuSeconds: number;
  eventLoopP99Ms?: number;
}

export async function measure(target: Target, request: Request, seconds: number, connections: number): Promise<Round> {
  if (target.name === 'server') await scrape(target); // resets the event-loop histogram
  const cpu = target.proc.cpuSeconds();
  const result = await load(target.url, request, seconds, connections);
  const round: Round = { load: result, cpuSeconds: target.proc.cpuSeconds() - cpu };
  if (target.name === 'server') round.eventLoopP99Ms = (await scrape(target)).eventLoopP99Ms;
  return round;
}

export function summarise(rounds: Round[], eventsPerRequest: number, peakRssBytes: number): Figures {
  const seconds = rounds.reduce((n, r) => n + r.load.seconds, 0);
  const ok = rounds.reduce((n, r) => n + r.load.ok, 0);
  const events = ok * eventsPerRequest;
  const median = (pick: (r: Round) => number) => {
    const values = rounds.map(pick).sort((a, b) => a - b);
    return values[Math.floor((values.length - 1) / 2)]!;
  };
  const loops = rounds.map((r) => r.eventLoopP99Ms).filter((v): v is number => v !== undefined);
  return {
    rps: ok / seconds,
    eventsPerSec: events / seconds,
    latency: { p50: median((r) => r.load.latency.p50), p99: median((r) => r.load.latency.p99), p999: median((r) => r.load.latency.p999) },
    cpuSecondsPerMillionEvents: (rounds.reduce((n, r) => n + r.cpuSeconds, 0) / Math.max(events, 1)) * 1e6,
    peakRssMiB: peakRssBytes / 1048576,
    ...(loops.length > 0 ? { eventLoopP99Ms: Math.max(...loops) } : {}),
    non2xx: rounds.reduce((n, r) => n + r.load.non2xx, 0),
    errors: rounds.reduce((n, r) => n + r.load.errors, 0),
  };
}

export interface Comparison {
  readonly targets: Record<'noop' | 'parse' | 'server', Figures>;
  readonly ratios: { serverToParse: number; serverToNoop: number; parseToNoop: number };
  readonly settled: Settled;
}

/** Scenarios 1-4: noop, parse-only and the server, in turn, `rounds` times. */
export async function compare(s3Endpoint: string, serverEnv: Record<string, string>, request: Request, eventsPerRequest: number, seconds: number, rounds: number, connections: number): Promise<Comparison> {
  const targets = [await startBaseline('noop'), await startBaseline('parse'), await startServer(s3Endpoint, serverEnv)];
  try {
    const byTarget = new Map<string, Round[]>(targets.map((t) => [t.name, []]));
    for (let round = 0; round < rounds; round++) {
      for (const target of targets) byTarget.get(target.name)!.push(await measure(target, request, seconds, connections));
    }
    const server = targets[2]!;
    const final = (await settle(server)).counters;
    const figures = Object.fromEntries(targets.map((t) => [t.name, summarise(byTarget.get(t.name)!, eventsPerRequest, t.proc.peakRssBytes())])) as Comparison['targets'];
    return {
      targets: figures,
      ratios: {
        serverToParse: figures.server.eventsPerSec / figures.parse.eventsPerSec,
        serverToNoop: figures.server.eventsPerSec / figures.noop.eventsPerSec,
        parseToNoop: figures.parse.eventsPerSec / figures.noop.eventsPerSec,
      },
      settled: { accepted: final.accepted, stored: final.stored, spilled: final.spilled, dropped: final.dropped },
    };
  } finally {
    for (const target of targets) await target.proc.stop();
  }
}
