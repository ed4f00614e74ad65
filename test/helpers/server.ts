// The real server as a child process on port 0: start it, talk to it, read its logs and metrics, stop it.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { chownSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import type { Owner } from './fault-proxy.js';
import { tempDir } from './temp.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const MAIN = `${ROOT}dist/main.js`;

export interface LogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A server a test talks to, in a child process (startServer) or in the test's own (startInProcess). */
export interface Served {
  url: string;
  port: number;
  /** Where /metrics is: its own port (METRICS_PORT), or `url` with METRICS_PORT=ingest. */
  metricsUrl: string;
  logs: LogLine[];
  /** Resolves with the first log line (already seen or still to come) that matches. */
  waitForLog(match: (line: LogLine) => boolean): Promise<LogLine>;
  /** A metric's value from /metrics; labels must match exactly as printed, e.g. `{code="SlowDown"}`. */
  metric(name: string, labels?: string): Promise<number>;
  /** The names of every metric /metrics exports. */
  exported(): Promise<Set<string>>;
  post(body: string | Buffer, headers?: Record<string, string>): Promise<Answer>;
  stop(signal?: NodeJS.Signals): Promise<Exit>;
  exited: Promise<Exit>;
}

/** The server as a child process. */
export interface RunningServer extends Served {
  child: ChildProcess;
  stderr(): string;
}

export interface Answer {
  status: number;
  headers: Headers;
  json: Record<string, unknown>;
}

/**
 * Only what a test passes reaches the server, so nothing from the developer's shell leaks in;
 * except tap's coverage variables, so that the servers' code counts in the coverage report.
 * WORKERS=1 unless the test says otherwise: the suite's limits and counts are those of one
 * thread whatever the machine's cores (test/e2e/workers.test.ts runs the worker threads).
 */
export function baseEnv(env: Record<string, string>): Record<string, string> {
  const coverage = Object.entries(process.env).filter(([name]) => name.startsWith('_TAPJS_PROCESSINFO_') || name === 'NODE_V8_COVERAGE');
  return { ...Object.fromEntries(coverage), PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...TEST_DEFAULTS, ...env };
}

/**
 * What every test server runs with unless the test says otherwise: loopback, free ports (the
 * default METRICS_PORT, 8081, would collide between servers run at once), one thread, a /metrics
 * page rendered at each scrape, so that a metric read right after an action shows it
 * (test/metrics/page.test.ts and test/server.test.ts cover the interval), and idle connections
 * kept 5 s: Node's fetch and http.Agent keep an idle connection as long as `Keep-Alive: timeout=`
 * says, less 1 s, so at the default (65 s) a test's connections would stay open for a minute (to
 * a server stopped in the test's own process, whose shutdown leaves them to the idle timeout,
 * they would hold the test process that long). 5 s keeps them about as long as Node's own default
 * (4 s) did before the server said it.
 */
export const TEST_DEFAULTS: Record<string, string> = { HOST: '127.0.0.1', PORT: '0', METRICS_PORT: '0', METRICS_RENDER_INTERVAL_MS: '0', HTTP_IDLE_TIMEOUT_S: '5', WORKERS: '1' };

/** The AWS SDK reads region and credentials from the process's environment: one set per process. */
const SDK_VARIABLES = ['AWS_REGION', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'] as const;

/** Puts `env`'s AWS SDK variables in this process's environment; throws if one is already set otherwise. */
export function useSdkVariables(env: Record<string, string>): void {
  for (const name of SDK_VARIABLES) {
    const value = env[name];
    if (value === undefined) continue;
    if (process.env[name] !== undefined && process.env[name] !== value) throw new Error(`${name} is already ${process.env[name]} in this process, not ${value}`);
    process.env[name] = value;
  }
}

/** Who the server runs as: a non-root user makes permission faults real (root ignores file modes). */
export interface RunAs {
  readonly uid?: number;
  readonly gid?: number;
}

export const NOBODY: RunAs = { uid: 65534, gid: 65534 };

/** A temp directory owned by `nobody`, so that a server can run as that user. */
export function nobodyDir(t: Owner, name: string): string {
  const dir = tempDir(t, name);
  chownSync(dir, 65534, 65534);
  return dir;
}

/** SIGKILLs a server process and checks that the kill is what ended it. */
export async function killed(t: Test, server: Pick<RunningServer, 'child' | 'exited'>): Promise<void> {
  server.child.kill('SIGKILL');
  t.same(await server.exited, { code: null, signal: 'SIGKILL' });
}

/**
 * Why `nobody` cannot run the server here, or false: Node or the build may sit under a private
 * home directory (a Node installed into root's cache, a clone under /root). Tests that need
 * `nobody` skip with this reason rather than fail for a reason of the machine's.
 */
export const nobodyCannotRun: string | false = (() => {
  if (process.getuid?.() !== 0) return 'not running as root, so cannot run a process as nobody';
  const probe = spawnSync(process.execPath, ['-e', `require('node:fs').accessSync(${JSON.stringify(MAIN)})`], { ...NOBODY, stdio: 'ignore' });
  return probe.status === 0 ? false : `nobody cannot run ${process.execPath} on ${MAIN} (a directory on the way is private)`;
})();

export function spawnServer(t: Owner, env: Record<string, string>, cwd = tempDir(t, 'server'), runAs: RunAs = {}): { child: ChildProcess; logs: LogLine[]; stderr(): string; waitForLog: RunningServer['waitForLog']; exited: Promise<Exit> } {
  const child = spawn(process.execPath, [MAIN], { cwd, env: baseEnv(env), stdio: ['ignore', 'pipe', 'pipe'], ...runAs });
  return watch(t, child);
}

export function watch(t: Owner, child: ChildProcess): { child: ChildProcess; logs: LogLine[]; stderr(): string; waitForLog: RunningServer['waitForLog']; exited: Promise<Exit> } {
  let stderr = '';
  let pending = '';
  const exited = once(child, 'exit').then(([code, signal]) => ({ code, signal }) as Exit);
  const book = logBook(exited, () => `; stderr: ${stderr}`);
  child.stdout!.setEncoding('utf8').on('data', (data: string) => {
    pending += data;
    for (let nl = pending.indexOf('\n'); nl !== -1; nl = pending.indexOf('\n')) {
      const text = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (text.startsWith('{')) book.add(JSON.parse(text) as LogLine);
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (data: string) => (stderr += data));
  // Gracefully, so that the server's coverage is written: a second SIGTERM spills at once, and
  // SIGKILL ends one that still hangs.
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timers = [setTimeout(() => child.kill('SIGTERM'), 1000), setTimeout(() => child.kill('SIGKILL'), 5000)];
    await exited;
    for (const timer of timers) clearTimeout(timer);
  });
  return { child, logs: book.logs, stderr: () => stderr, exited, waitForLog: book.waitForLog };
}

/**
 * A server's log lines as they come, and waiting for one: a wait still pending when the server
 * ends fails, saying so (`more` adds what else there is to tell, such as stderr).
 */
export function logBook(exited: Promise<Exit>, more: () => string = () => ''): { logs: LogLine[]; add(line: LogLine): void; waitForLog: Served['waitForLog'] } {
  const logs: LogLine[] = [];
  const waiters: { match: (line: LogLine) => boolean; resolve: (line: LogLine) => void }[] = [];
  return {
    logs,
    add(line) {
      logs.push(line);
      for (const w of waiters.filter((w) => w.match(line))) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    },
    waitForLog: (match) => {
      const seen = logs.find(match);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        waiters.push({ match, resolve });
        exited.then((exit) => reject(new Error(`server exited (${exit.code ?? exit.signal}) before the awaited log line${more()}`)), reject);
      });
    },
  };
}

/** What a test asks of a server over HTTP at `url`, and of its /metrics at `metricsUrl`. */
export function client(url: string, metricsUrl: string): Pick<Served, 'metric' | 'exported' | 'post'> {
  return {
    metric: async (name, labels = '') => metricValue(await (await fetch(metricsUrl)).text(), name, labels),
    exported: async () => new Set([...(await (await fetch(metricsUrl)).text()).matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!)),
    post: (body, headers = { 'content-type': 'application/json' }) => post(`${url}/v1/events`, body, headers),
  };
}

export async function startServer(t: Owner, env: Record<string, string>, runAs: RunAs = {}): Promise<RunningServer> {
  const proc = spawnServer(t, env, tempDir(t, 'server'), runAs);
  const listening = await proc.waitForLog((l) => l.msg === 'listening');
  // The start-up S3 preflight has ended too: a test that ended while it ran could remove the S3
  // server's directory under a PUT it is still writing (s3rver writes on after the client went).
  await proc.waitForLog((l) => l.msg.startsWith('S3 preflight'));
  const port = listening.port as number;
  const url = `http://127.0.0.1:${port}`;
  const metricsUrl = `http://127.0.0.1:${listening.metricsPort as number}/metrics`;
  return {
    ...proc,
    ...client(url, metricsUrl),
    url,
    port,
    metricsUrl,
    stop: async (signal = 'SIGTERM') => {
      proc.child.kill(signal);
      return proc.exited;
    },
  };
}

/**
 * A sample's value from a /metrics page. A series not (yet) exported reads 0, but a metric the
 * page does not declare at all throws: a misspelt or removed name must fail the test.
 */
export function metricValue(text: string, name: string, labels = ''): number {
  const family = name.replace(/_(bucket|sum|count)$/, '');
  if (!text.includes(`# TYPE ${name} `) && !text.includes(`# TYPE ${family} histogram`)) {
    throw new Error(`/metrics exports no metric named ${name}`);
  }
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

export async function post(url: string, body: string | Buffer, headers: Record<string, string>): Promise<Answer> {
  const res = await fetch(url, { method: 'POST', body: typeof body === "string" ? body : new Uint8Array(body), headers });
  const text = await res.text();
  return { status: res.status, headers: res.headers, json: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

/** Polls `check` until it returns true (bounded by `tries`); for waiting on asynchronous work, never for timing it. */
export async function eventually(check: () => Promise<boolean> | boolean, tries = 200, everyMs = 50): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`condition not met after ${tries} tries`);
}
