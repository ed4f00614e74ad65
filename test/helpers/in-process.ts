// The real server inside the test's own process, for tests whose subject is not the process: the
// same build, config, listeners, pipeline, S3 client and DLQ as `npm start`, on port 0, without a
// Node start-up and an AWS SDK load per server. What only a process shows stays with startServer
// (server.ts): signals, kills, exit codes, stderr, fatal start-up lines, RSS and fds, EMF lines
// on stdout (here stdout is tap's), DURABLE_ROOT (a lost lease exits the process) and preloads.
// WORKERS > 1 works here, but each worker thread inherits the test runner's loaders (tap's hooks,
// and ts-node under a plain `npx tap`): a start took 2 to 4 s against a spawned server's 1.3 s, so
// those tests spawn.
import { join } from 'node:path';
import { pino, stdTimeFunctions } from 'pino';
import type * as ConfigModule from '../../src/config.js';
import type * as ServerModule from '../../src/server.js';
import type { Owner } from './fault-proxy.js';
import { client, type Exit, type LogLine, logBook, ROOT, type Served, TEST_DEFAULTS, useSdkVariables } from './server.js';
import { tempDir } from './temp.js';

// The build, as the spawned servers run it (its worker threads load dist/ingest/worker.js); the
// types are the sources'.
const { loadConfig } = (await import(`${ROOT}dist/config.js`)) as typeof ConfigModule;
const { startServer } = (await import(`${ROOT}dist/server.js`)) as typeof ServerModule;

/** Signals as the process would take them: each begins the shutdown, a second one hurries it. */
export type Signal = 'SIGTERM' | 'SIGINT' | 'SIGHUP';

export interface InProcessServer extends Served {
  /** What the signal does to the process, without waiting: the shutdown begins (or is hurried). */
  signal(signal: Signal): void;
  /** False once the shutdown has ended. */
  running(): boolean;
  stop(signal?: Signal): Promise<Exit>;
}


/** Variables that only a process of its own can honour (see the top). */
const NEEDS_A_PROCESS: Record<string, (value: string) => boolean> = {
  METRICS_EMF: (value) => value === 'true',
  DURABLE_ROOT: () => true,
  NODE_OPTIONS: () => true,
};

/**
 * Starts a server in this process with `env` as its whole environment (over startServer's
 * TEST_DEFAULTS: 127.0.0.1, free ports, WORKERS=1, /metrics rendered at each scrape) and a DLQ_DIR and WAL_DIR of its own unless given; resolves once
 * it listens and its S3 preflight has ended. A teardown stops it.
 */
export async function startInProcess(t: Owner, env: Record<string, string>): Promise<InProcessServer> {
  for (const [name, needs] of Object.entries(NEEDS_A_PROCESS)) {
    if (env[name] !== undefined && needs(env[name])) throw new Error(`${name}=${env[name]} needs a server process of its own: use startServer`);
  }
  // Local mode would write under the test's working directory.
  if (env.S3_BUCKET === undefined) throw new Error('an in-process server needs an S3 server (startS3(t).env): local mode writes under ./data');
  // The start waits for the preflight's info line, which a higher level would never write.
  if (['warn', 'error', 'fatal', 'silent'].includes(env.LOG_LEVEL ?? '')) throw new Error(`LOG_LEVEL=${env.LOG_LEVEL}: an in-process server waits for the S3 preflight's info line; use info or lower`);
  useSdkVariables(env);
  const dir = tempDir(t, 'server');
  const config = loadConfig({ ...TEST_DEFAULTS, DLQ_DIR: join(dir, 'dlq'), WAL_DIR: join(dir, 'wal'), ...env });

  let end: (exit: Exit) => void = () => {};
  const exited = new Promise<Exit>((resolve) => (end = resolve));
  let ended = false;
  const book = logBook(exited);
  // src/log.ts's format (ISO time, the level as a word, the instance), into the log book.
  const log = pino(
    { level: config.logLevel, base: { instance: config.instanceId }, timestamp: stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } },
    { write: (text: string) => book.add(JSON.parse(text) as LogLine) },
  );
  // A worker thread's crash begins the shutdown, with exit code 1, as main.ts does.
  let crashedEarly = false;
  let shutdown: ServerModule.Server['shutdown'] | undefined;
  // The server keeps stdout's EPIPE from ending its process, with a listener of its own that it
  // never removes (it has the process to itself): gone with the server here, so that a test
  // process that starts many has no listener leak warning.
  const stdoutListeners = new Set(process.stdout.listeners('error'));
  const server = await startServer(config, log, () => (shutdown === undefined ? (crashedEarly = true) : shutdown.begin('crash', 1)));
  const added = process.stdout.listeners('error').filter((listener) => !stdoutListeners.has(listener));
  shutdown = server.shutdown;
  server.shutdown.ended.then(
    async ({ code }) => {
      for (const listener of added) process.stdout.removeListener('error', listener as (err: Error) => void);
      // As main.ts's exit: the worker threads (WORKERS > 1) are ended before the process would be.
      // One that does not end in time would have the process kill itself.
      const threadsEnded = server.endThreads === undefined || (await server.endThreads(500));
      ended = true;
      end(threadsEnded ? { code, signal: null } : { code: null, signal: 'SIGKILL' });
    },
    () => end({ code: 1, signal: null }),
  );
  if (crashedEarly) server.shutdown.begin('crash', 1);
  // As startServer: the preflight has ended before the test goes on.
  await book.waitForLog((l) => l.msg.startsWith('S3 preflight'));
  t.teardown(async () => {
    if (ended) return;
    server.shutdown.begin('SIGTERM', 0);
    const hurry = setTimeout(() => server.shutdown.begin('SIGTERM', 0), 1000);
    await exited;
    clearTimeout(hurry);
  });
  const url = `http://127.0.0.1:${server.port}`;
  const metricsUrl = `http://127.0.0.1:${server.metricsPort}/metrics`;
  const signal = (name: Signal): void => server.shutdown.begin(name, 0);
  return {
    ...client(url, metricsUrl),
    url,
    port: server.port,
    metricsUrl,
    logs: book.logs,
    waitForLog: book.waitForLog,
    exited,
    signal,
    running: () => !ended,
    stop: (name = 'SIGTERM') => {
      signal(name);
      return exited;
    },
  };
}
