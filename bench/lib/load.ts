// The load generator: wrk with a Lua script when installed (apt-get install -y wrk), else autocannon.
// Bounded in time; counts 2xx and the rest apart; latency over all answered requests.
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import autocannon from 'autocannon';
import { LOAD_CORE, pinned } from './procs.js';

export interface Request {
  readonly body: Buffer;
  readonly headers: Record<string, string>;
}

export interface LoadResult {
  readonly seconds: number;
  readonly requests: number;
  readonly ok: number;
  /** Answers other than 2xx (e.g. 503). */
  readonly non2xx: number;
  /** Connection errors and timeouts. */
  readonly errors: number;
  /** Milliseconds. */
  readonly latency: { p50: number; p99: number; p999: number };
}

export const GENERATOR = (() => {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
    return 'wrk';
  } catch (err) {
    // wrk --version exits 1 after printing its version; only a missing binary is ENOENT.
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'autocannon' : 'wrk';
  }
})();

export async function load(url: string, request: Request, seconds: number, connections: number): Promise<LoadResult> {
  return GENERATOR === 'wrk' ? wrk(url, request, seconds, connections) : cannon(url, request, seconds, connections);
}

const LUA = (bodyFile: string, headers: Record<string, string>) => `
wrk.method = "POST"
local f = io.open("${bodyFile}", "rb")
wrk.body = f:read("*all")
f:close()
${Object.entries(headers)
  .map(([k, v]) => `wrk.headers["${k}"] = "${v}"`)
  .join('\n')}
done = function(summary, latency, requests)
  io.write(string.format('WRKJSON {"requests":%d,"duration":%d,"status":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,"p50":%d,"p99":%d,"p999":%d}\\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
`;

async function wrk(url: string, request: Request, seconds: number, connections: number): Promise<LoadResult> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-wrk-'));
  writeFileSync(join(dir, 'body'), request.body);
  writeFileSync(join(dir, 'script.lua'), LUA(join(dir, 'body'), request.headers));
  const [cmd, args] = pinned(LOAD_CORE, 'wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, '--timeout', '10s', '-s', join(dir, 'script.lua'), `${url}/v1/events`]);
  const { stdout } = await promisify(execFile)(cmd, args, { maxBuffer: 1 << 20 });
  const line = stdout.split('\n').find((l) => l.startsWith('WRKJSON '));
  if (line === undefined) throw new Error(`wrk printed no summary: ${stdout}`);
  const r = JSON.parse(line.slice(8)) as Record<string, number>;
  const errors = r.connect! + r.read! + r.write! + r.timeout!;
  return {
    seconds: r.duration! / 1e6,
    requests: r.requests!,
    ok: r.requests! - r.status!,
    non2xx: r.status!,
    errors,
    latency: { p50: r.p50! / 1000, p99: r.p99! / 1000, p999: r.p999! / 1000 },
  };
}

async function cannon(url: string, request: Request, seconds: number, connections: number): Promise<LoadResult> {
  const r = await autocannon({ url: `${url}/v1/events`, method: 'POST', body: request.body, headers: request.headers, connections, duration: seconds });
  const ok = r['2xx'];
  return {
    seconds: r.duration,
    requests: r.requests.total,
    ok,
    non2xx: r.non2xx,
    errors: r.errors, // includes timeouts
    latency: { p50: r.latency.p50, p99: r.latency.p99, p999: r.latency.p99_9 },
  };
}
