// What a scenario runs against: the server built from this repo (defaults, unless a scenario says
// otherwise) and the two baselines, on the server core; an S3 server on the load core; and the
// other endpoints given with --target, which run elsewhere.
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serverCounters } from '../../test/harness/zero-loss.js';
import { LOAD_CORE, type Proc, SERVER_CORE, start, type Usage, usage } from './procs.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));
export const REPO = fileURLToPath(new URL('../../../', import.meta.url)); // .bench/bench/lib -> repo
const NODE = process.execPath;

/** Anything the load can be pointed at. */
export interface Target {
  /** `noop`, `parse`, `server`, or the URL given with --target. */
  readonly name: string;
  /** Where the load POSTs its bodies. */
  readonly endpoint: string;
  /** Absent for a --target without --target-pid: its CPU and memory cannot be known. */
  readonly usage?: Usage;
}

/** The server or a baseline: started here, with /metrics (the server only) at `metricsUrl`. */
export interface Local extends Target {
  readonly url: string;
  readonly metricsUrl?: string;
  readonly proc: Proc;
}

/** Another ingest endpoint (--target), already running; its pid, if given, for /proc. */
export function outside(url: string, pid: number | undefined): Target {
  return { name: url, endpoint: url, ...(pid === undefined ? {} : { usage: usage(pid) }) };
}

export interface S3 {
  readonly endpoint: string;
  readonly port: number;
  /** s3rver's directory: each object is one `<key>._S3rver_object` file in it. */
  readonly dir: string;
  readonly proc: Proc;
}

export async function startS3(): Promise<S3> {
  const dir = tempDir('bench-s3-');
  let port = 0;
  const proc = await startRemoving(dir, LOAD_CORE, NODE, [join(HERE, 's3-server.js'), dir], process.env, (line) => {
    const m = /^ready (\d+)$/.exec(line);
    if (m) port = Number(m[1]);
    return m !== null;
  });
  return { endpoint: `http://127.0.0.1:${port}`, port, dir, proc };
}

const tempDir = (prefix: string): string => mkdtempSync(join(tmpdir(), prefix));

/** start(), and `dir` (the process's own) removed once it has exited, or at once if it never started. */
async function startRemoving(dir: string, ...args: Parameters<typeof start>): Promise<Proc> {
  const remove = () => rmSync(dir, { recursive: true, force: true });
  try {
    const proc = await start(...args);
    proc.child.once('exit', remove);
    return proc;
  } catch (err) {
    remove();
    throw err;
  }
}

function objectFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('._S3rver_object'))
    .map((entry) => join(entry.parentPath, entry.name));
}

/** Bytes of every object in the S3 server so far; a scenario takes the difference over its run. */
export function storedBytes(dir: string): number {
  return objectFiles(dir).reduce((total, file) => total + statSync(file).size, 0);
}

/**
 * When the S3 server last finished writing an object (ms since the epoch, from the files' mtime),
 * 0 if never: the end of a drain, read from S3's side, so that how often /metrics is polled (or
 * cached) does not stretch it.
 */
export function lastObjectWrite(dir: string): number {
  return objectFiles(dir).reduce((last, file) => Math.max(last, statSync(file).mtimeMs), 0);
}

export async function startBaseline(name: 'noop' | 'parse'): Promise<Local> {
  let port = 0;
  const proc = await start(SERVER_CORE, NODE, [join(HERE, '..', 'baselines', `${name}.js`)], process.env, (line) => {
    const m = /^listening (\d+)$/.exec(line);
    if (m) port = Number(m[1]);
    return m !== null;
  });
  return { name, url: `http://127.0.0.1:${port}`, endpoint: `http://127.0.0.1:${port}/v1/events`, usage: proc, proc };
}

/**
 * The real server, from dist/, writing to `s3Endpoint`; extra env for a scenario's settings; on
 * the server core unless `cores` says otherwise; `nodeArgs` before the script (the profile's
 * --cpu-prof). /metrics on a port of its own choosing (METRICS_PORT=0), read from its log.
 */
export async function startServer(s3Endpoint: string, env: Record<string, string> = {}, cores = SERVER_CORE, nodeArgs: readonly string[] = []): Promise<Local> {
  let port = 0;
  let metricsPort = 0;
  const dlqDir = tempDir('bench-dlq-');
  const proc = await startRemoving(
    dlqDir,
    cores,
    NODE,
    [...nodeArgs, join(REPO, 'dist', 'main.js')],
    {
      PATH: process.env.PATH,
      HOST: '127.0.0.1',
      PORT: '0',
      // Each scrape renders anew: a scenario's scrapes may come within the default second of each other.
      METRICS_RENDER_INTERVAL_MS: '0',
      // info: the `listening` line gives the port; the server never logs per request.
      LOG_LEVEL: 'info',
      S3_BUCKET: 'bench',
      S3_ENDPOINT: s3Endpoint,
      S3_FORCE_PATH_STYLE: 'true',
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      DLQ_DIR: dlqDir,
      ...env,
      // After `env`: the bench reads /metrics where the log says, whatever a scenario sets.
      METRICS_PORT: '0',
    },
    (line) => {
      if (!line.includes('"msg":"listening"')) return false;
      ({ port, metricsPort } = JSON.parse(line) as { port: number; metricsPort: number });
      return true;
    },
  );
  return { name: 'server', url: `http://127.0.0.1:${port}`, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`, endpoint: `http://127.0.0.1:${port}/v1/events`, usage: proc, proc };
}

export interface Scrape {
  readonly counters: ReturnType<typeof serverCounters>;
  readonly status503: number;
  readonly eventLoopP99Ms: number;
  readonly channelEvents: number;
  /** JSON-lines bytes the server gzipped, and the gzip bytes they made, over its life. */
  readonly batchBytes: number;
  readonly batchCompressedBytes: number;
}

/** Reads the server's /metrics. Also resets its event-loop delay histogram (prom-client does at each scrape). */
export async function scrape(target: Local): Promise<Scrape> {
  if (target.metricsUrl === undefined) throw new Error(`${target.name} serves no /metrics`);
  const text = await (await fetch(target.metricsUrl)).text();
  const value = (prefix: string) => Number(text.split('\n').find((l) => l.startsWith(prefix))?.split(' ').pop() ?? 0);
  return {
    counters: serverCounters(text),
    status503: value('http_requests_total{status="503"}'),
    eventLoopP99Ms: value('nodejs_eventloop_lag_p99_seconds') * 1000,
    channelEvents: value('channel_events'),
    batchBytes: value('batch_uncompressed_bytes_sum'),
    batchCompressedBytes: value('batch_compressed_bytes_sum'),
  };
}

/**
 * Waits (bounded) until every accepted event is in S3 or the DLQ; returns the final counters.
 * `minAccepted`: the events the load saw accepted, so that a /metrics page rendered before they
 * were (should the server cache it) cannot pass for the settled state.
 */
export async function settle(target: Local, maxSeconds = 120, minAccepted = 0): Promise<Scrape> {
  let last = await scrape(target);
  for (let i = 0; i < maxSeconds * 4; i++) {
    const { accepted, stored, spilled, dlqEvents } = last.counters;
    if (accepted >= minAccepted && accepted === stored + spilled && dlqEvents === 0) return last;
    // Every 250 ms: each scrape costs the server a render, which a profile would count as metrics.
    await new Promise((r) => setTimeout(r, 250));
    last = await scrape(target);
  }
  return last;
}
