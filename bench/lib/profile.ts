// Where the server's CPU goes, by stage, from a V8 CPU profile (`node --cpu-prof`, a .cpuprofile
// file) of its main thread. Each sample is given to the stage of the innermost frame on its stack
// that belongs to a stage: Node's and V8's own functions (Buffer, JSON.parse, a uWS binding) have
// no stage of their own and count for the code that called them. Pure, so that a test can feed it
// a small profile; bench/lib/profile-run.ts takes the profile under load.

/** The parts of a .cpuprofile this reads (Chrome DevTools protocol, Profiler.Profile). */
export interface CpuProfile {
  readonly nodes: readonly { readonly id: number; readonly callFrame: { readonly functionName: string; readonly url: string }; readonly children?: readonly number[] }[];
  /** Microseconds, on the monotonic clock (process.hrtime's on Linux). */
  readonly startTime: number;
  readonly endTime: number;
  /** The node id at the top of the stack, one per sample. */
  readonly samples: readonly number[];
  /** Microseconds from the previous sample (the first: from startTime). */
  readonly timeDeltas: readonly number[];
}

/** The stages, in the order of the table, each with the rule that finds its frames. */
export const STAGES = [
  { id: 'http', name: 'HTTP and body read', covers: 'src/ingest/* other than the scanner, uWebSockets.js' },
  { id: 'scan', name: 'scan and validation', covers: 'src/ingest/json-scan, src/ingest/body (JSON.parse and UTF-8 checks they call)' },
  { id: 'batch', name: 'batching and line encoding', covers: 'src/upload/batcher, src/pipeline, src/channel, src/acks, src/wiring' },
  { id: 'zlib', name: 'compression (main thread)', covers: 'node:zlib: its calls and callbacks on the main thread' },
  { id: 's3', name: 'S3 client and signing', covers: 'src/upload/* other than the batcher, @aws-sdk, @smithy, p-queue, p-retry' },
  { id: 'durable', name: 'WAL and DLQ', covers: 'src/wal/*, src/dlq/*' },
  { id: 'observe', name: 'metrics and logging', covers: 'src/metrics/*, src/log, prom-client, pino' },
  { id: 'gc', name: 'GC', covers: '(garbage collector)' },
  { id: 'native', name: 'native, outside JS', covers: '(program): native code outside JS and outside the poll phase' },
  { id: 'other', name: 'other', covers: 'anything else: timers and promise plumbing called from no stage, start-up code, other packages' },
  { id: 'idle', name: 'idle', covers: "(idle): libuv's poll phase: waiting, or uWS's C++ at work (the next row)" },
] as const;

export type Stage = (typeof STAGES)[number]['id'];

// The server's own files (src/ or, as run, dist/), first match winning: the scanner before the
// rest of src/ingest, the batcher before the rest of src/upload.
const APP_RULES: readonly (readonly [Stage, RegExp])[] = [
  ['scan', /\/(src|dist)\/ingest\/(json-scan|body)\.[jt]s$/],
  ['http', /\/(src|dist)\/ingest\//],
  ['batch', /\/(src|dist)\/(upload\/batcher|pipeline|channel|acks|wiring)\.[jt]s$/],
  ['s3', /\/(src|dist)\/upload\//],
  ['durable', /\/(src|dist)\/(wal|dlq)\//],
  ['observe', /\/(src|dist)\/(metrics\/[^/]+|log)\.[jt]s$/],
];
// Packages, by the first part of their name under node_modules/.
const PACKAGES: Readonly<Record<string, Stage>> = {
  'uWebSockets.js': 'http',
  '@aws-sdk': 's3',
  '@smithy': 's3',
  'p-queue': 's3',
  'p-retry': 's3',
  'prom-client': 'observe',
  pino: 'observe',
  'pino-std-serializers': 'observe',
  'sonic-boom': 'observe',
  'thread-stream': 'observe',
};

/**
 * The stage of one frame; undefined for a frame of Node or V8 (url empty or `node:`, zlib aside),
 * which counts for its caller. Anything else of the application or its packages is `other`.
 */
export function stageOfFrame(functionName: string, url: string): Stage | undefined {
  if (functionName === '(garbage collector)') return 'gc';
  if (functionName === '(idle)') return 'idle';
  if (functionName === '(program)') return 'native';
  if (url === 'node:zlib') return 'zlib';
  if (url === '' || url.startsWith('node:')) return undefined;
  const inPackage = url.lastIndexOf('/node_modules/');
  if (inPackage !== -1) return PACKAGES[url.slice(inPackage + '/node_modules/'.length).split('/')[0]!] ?? 'other';
  return APP_RULES.find(([, rule]) => rule.test(url))?.[0] ?? 'other';
}

export interface Attribution {
  /** Microseconds of samples by stage. */
  readonly us: Record<Stage, number>;
  readonly totalUs: number;
  readonly samples: number;
  /** Whether the samples were limited to the window asked for (false: it did not overlap the profile, so all of it). */
  readonly windowed: boolean;
}

/**
 * Samples by stage. Each sample lasts until the next one (the last: the mean interval). `window`
 * (monotonic microseconds, as the profile's own times) keeps the samples taken within it: the load
 * and its drain, without start-up and shutdown.
 */
export function attribute(profile: CpuProfile, window?: { from: number; to: number }): Attribution {
  const parent = new Map<number, number>();
  const frames = new Map<number, { functionName: string; url: string }>();
  for (const node of profile.nodes) {
    frames.set(node.id, node.callFrame);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const stageCache = new Map<number, Stage>();
  const stageOf = (id: number): Stage => {
    const cached = stageCache.get(id);
    if (cached !== undefined) return cached;
    let stage: Stage | undefined;
    for (let at: number | undefined = id; stage === undefined && at !== undefined; at = parent.get(at)) {
      const frame = frames.get(at)!;
      stage = stageOfFrame(frame.functionName, frame.url);
    }
    stageCache.set(id, stage ?? 'other');
    return stage ?? 'other';
  };
  const n = profile.samples.length;
  const overlaps = window !== undefined && window.from < profile.endTime && window.to > profile.startTime;
  const meanInterval = n === 0 ? 0 : (profile.endTime - profile.startTime) / n;
  const us = Object.fromEntries(STAGES.map((s) => [s.id, 0])) as Record<Stage, number>;
  let totalUs = 0;
  let samples = 0;
  let at = profile.startTime;
  for (let i = 0; i < n; i++) {
    at += profile.timeDeltas[i]!;
    if (overlaps && (at < window.from || at >= window.to)) continue;
    const lasting = i + 1 < n ? profile.timeDeltas[i + 1]! : meanInterval;
    us[stageOf(profile.samples[i]!)] += lasting;
    totalUs += lasting;
    samples++;
  }
  return { us, totalUs, samples, windowed: overlaps };
}

/** The process's other threads, by what they do (Node 24's thread names). */
export const THREAD_GROUPS = [
  { id: 'pool', name: 'thread pool (gzip)', covers: "libuv-worker: libuv's pool, where zlib compresses (and file system calls run)" },
  { id: 'v8', name: 'V8 helper threads', covers: 'V8Worker, DelayedTaskSche: concurrent GC, JIT compilation' },
  { id: 'other', name: 'other threads', covers: "any other thread of the server's" },
  { id: 'profiler', name: 'the profiler (not in the total)', covers: "v8:ProfEvntProc, SignalInspector: the profiling itself, not the server's cost" },
] as const;

export type ThreadGroup = (typeof THREAD_GROUPS)[number]['id'];

export function threadGroup(name: string): ThreadGroup {
  if (name.startsWith('libuv-worker')) return 'pool';
  if (name.startsWith('V8Worker') || name.startsWith('DelayedTaskSche')) return 'v8';
  if (name.startsWith('v8:Prof') || name.startsWith('SignalInspector')) return 'profiler';
  return 'other';
}

/** Over the window: the main thread's CPU seconds and seconds waiting for a CPU, and the other threads' CPU seconds by group. */
export interface WindowCpu {
  readonly mainThreadSeconds: number;
  readonly mainThreadWaitSeconds: number;
  readonly threads: Record<ThreadGroup, number>;
}

export interface StageRow {
  readonly stage: string;
  readonly covers: string;
  /** Of all main-thread samples in the window, idle included. */
  readonly share: number;
  /** Undefined for idle, which costs no CPU. */
  readonly cpuUsPerEvent: number | undefined;
}

/**
 * CPU per event by stage. Samples count wall time: a busy sample also spans the moments another
 * thread had the core (the scheduler's run-queue wait, spread over the thread's running time in
 * proportion), so each busy stage gets its samples' time less that share. What is left of the main
 * thread's CPU ran under samples V8 marks idle: libuv's poll phase, where uWS's C++ reads, parses
 * and writes HTTP and the kernel does its side. Then the other threads, by group.
 */
export function stageRows(attribution: Attribution, cpu: WindowCpu, events: number): StageRow[] {
  const busyUs = attribution.totalUs - attribution.us.idle;
  const runUs = cpu.mainThreadSeconds * 1e6;
  const waiting = runUs === 0 ? 0 : cpu.mainThreadWaitSeconds / cpu.mainThreadSeconds;
  const busyCpuUs = Math.min(busyUs / (1 + waiting), runUs);
  const scale = busyUs === 0 ? 0 : busyCpuUs / busyUs;
  const perEvent = (us: number) => (events === 0 ? undefined : us / events);
  const rows: StageRow[] = STAGES.map(({ id, name, covers }) => ({
    stage: name,
    covers,
    share: attribution.totalUs === 0 ? 0 : attribution.us[id] / attribution.totalUs,
    cpuUsPerEvent: id === 'idle' ? undefined : perEvent(attribution.us[id] * scale),
  }));
  rows.push({
    stage: 'event-loop poll',
    covers: "the main thread's CPU under idle samples: uWS's C++ (HTTP parsing, socket reads and writes) and the kernel's side, in libuv's poll phase",
    share: 0,
    cpuUsPerEvent: perEvent(runUs - busyCpuUs),
  });
  for (const { id, name, covers } of THREAD_GROUPS) rows.push({ stage: name, covers, share: 0, cpuUsPerEvent: perEvent(cpu.threads[id] * 1e6) });
  return rows;
}

/** Rows derived from /proc rather than from samples: no share of the samples. */
const DERIVED = new Set<string>(['event-loop poll', ...THREAD_GROUPS.map((g) => g.name)]);
const PROFILER = THREAD_GROUPS.find((g) => g.id === 'profiler')!.name;

/** The table of stageRows, Markdown; the total leaves the profiler's own thread out. */
export function stageTable(rows: readonly StageRow[]): string {
  const total = rows.reduce((n, r) => n + (r.stage === PROFILER ? 0 : (r.cpuUsPerEvent ?? 0)), 0);
  const lines = ['| stage | what counts in it | share of main-thread samples | CPU µs per event |', '|---|---|---:|---:|'];
  for (const r of rows) lines.push(`| ${r.stage} | ${r.covers} | ${DERIVED.has(r.stage) ? '' : `${(r.share * 100).toFixed(1)}%`} | ${r.cpuUsPerEvent === undefined ? '' : r.cpuUsPerEvent.toFixed(2)} |`);
  lines.push(`| **total** | the server's threads | 100% | **${total.toFixed(2)}** |`);
  return `${lines.join('\n')}\n`;
}
