// `npm run bench -- --profile [single|array|ndjson|gzip ...]`: the server under load with Node's CPU
// profiler (--cpu-prof) and WORKERS=1, so that every request is handled on the one thread profiled;
// then the samples of the load and its drain by stage (profile.ts), scaled by the CPU time /proc
// gives for that thread, and the rest of the process (the zlib thread pool) beside them.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Context } from './context.js';
import { bodies, type Shape } from './bodies.js';
import { measure, monotonicUs } from './measure.js';
import { mainThreadSchedule, otherThreads, SERVER_CORE } from './procs.js';
import { attribute, type CpuProfile, type StageRow, stageRows, THREAD_GROUPS, threadGroup, type WindowCpu } from './profile.js';
import { startServer } from './stack.js';

export interface ProfileResult {
  readonly shape: Shape;
  /** Events accepted (and stored) in the window: the load and its drain. */
  readonly events: number;
  readonly windowSeconds: number;
  /** Main-thread samples in the window, and whether the window could be applied (else the whole profile). */
  readonly samples: number;
  readonly windowed: boolean;
  readonly eventsPerSec: number;
  readonly share503: number;
  readonly cpu: WindowCpu;
  readonly rows: readonly StageRow[];
}

export async function profileRun(ctx: Context, shape: Shape): Promise<ProfileResult> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-prof-'));
  const shaped = bodies(shape);
  const server = await startServer(ctx.s3.endpoint, { ...ctx.serverEnv, WORKERS: '1' }, SERVER_CORE, ['--cpu-prof', `--cpu-prof-dir=${dir}`]);
  try {
    let measured;
    try {
      // A short load first, outside the window: JIT compilation and first allocations are start-up, not the cost of an event.
      await measure(server, shaped, Math.min(2, ctx.seconds), ctx.connections, { s3Dir: ctx.s3.dir });
      const before = { main: mainThreadSchedule(server.proc.pid), threads: new Map(otherThreads(server.proc.pid).map((t) => [t.tid, t.seconds])) };
      const round = await measure(server, shaped, ctx.seconds, ctx.connections, { s3Dir: ctx.s3.dir });
      const main = mainThreadSchedule(server.proc.pid);
      const threads = Object.fromEntries(THREAD_GROUPS.map((g) => [g.id, 0])) as WindowCpu['threads'];
      // A thread started within the window counts from 0; one that ended within it is lost (libuv's and V8's live as long as the process).
      for (const t of otherThreads(server.proc.pid)) threads[threadGroup(t.name)] += t.seconds - (before.threads.get(t.tid) ?? 0);
      const cpu: WindowCpu = { mainThreadSeconds: main.runSeconds - before.main.runSeconds, mainThreadWaitSeconds: main.waitSeconds - before.main.waitSeconds, threads };
      measured = { round, cpu, window: { from: round.loadStartedUs, to: monotonicUs() } };
    } finally {
      // The profile is written as the process exits (SIGTERM: a graceful shutdown).
      await server.proc.stop();
    }
    // CPU.<date>.<time>.<pid>.<thread>.<n>.cpuprofile: thread 0 is the main thread.
    const file = readdirSync(dir).find((name) => name.endsWith('.cpuprofile') && name.includes(`.${server.proc.pid}.0.`));
    if (file === undefined) throw new Error(`no main-thread profile in ${dir}: ${readdirSync(dir).join(', ')}`);
    const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile;
    const { round, cpu, window } = measured;
    const attribution = attribute(profile, window);
    const events = round.e2e!.events;
    return {
      shape,
      events,
      windowSeconds: (window.to - window.from) / 1e6,
      samples: attribution.samples,
      windowed: attribution.windowed,
      eventsPerSec: events / round.e2e!.seconds,
      share503: round.load.requests === 0 ? 0 : round.load.non2xx / round.load.requests,
      cpu,
      rows: stageRows(attribution, cpu, events),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
