// The load generator: wrk with a Lua script when installed (apt-get install -y wrk), else autocannon.
// Bounded in time; counts 2xx and the rest apart; latency over all answered requests.
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import autocannon from 'autocannon';
import { LOAD_CORE, pinned } from './procs.js';

export interface Request {
  /** Sent in turn, each connection cycling through them; each holds the same number of events. */
  readonly bodies: readonly Buffer[];
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

/** POSTs `request` to `url` (the full endpoint) from `connections` connections for `seconds`. */
export async function load(url: string, request: Request, seconds: number, connections: number): Promise<LoadResult> {
  return GENERATOR === 'wrk' ? wrk(url, request, seconds, connections) : cannon(url, request, seconds, connections);
}

// The bodies sit end to end in one file; the requests are built once in init and handed out in
// turn, so the load generator does no more per request than pick the next one.
const LUA = (bodiesFile: string, lengths: number[], headers: Record<string, string>) => `
wrk.method = "POST"
${Object.entries(headers)
  .map(([k, v]) => `wrk.headers["${k}"] = "${v}"`)
  .join('\n')}
local lengths = {${lengths.join(',')}}
local requests = {}
local turn = 0
init = function(args)
  local f = io.open("${bodiesFile}", "rb")
  local all = f:read("*all")
  f:close()
  local at = 1
  for i, n in ipairs(lengths) do
    requests[i] = wrk.format(nil, nil, nil, string.sub(all, at, at + n - 1))
    at = at + n
  end
end
request = function()
  turn = turn % #requests + 1
  return requests[turn]
end
done = function(summary, latency, requests)
  io.write(string.format('WRKJSON {"requests":%d,"duration":%d,"status":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,"p50":%d,"p99":%d,"p999":%d}\\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
`;

// A script and its bodies file for each request shape, written once (10,000 bodies of 50 events
// are about 160 MB) and removed as the bench exits.
const scripts = new Map<Request, string>();
process.once('exit', () => {
  for (const script of scripts.values()) rmSync(dirname(script), { recursive: true, force: true });
});

function script(request: Request): string {
  let path = scripts.get(request);
  if (path === undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'bench-wrk-'));
    writeFileSync(join(dir, 'bodies'), Buffer.concat(request.bodies));
    path = join(dir, 'script.lua');
    writeFileSync(path, LUA(join(dir, 'bodies'), request.bodies.map((b) => b.length), request.headers));
    scripts.set(request, path);
  }
  return path;
}

async function wrk(url: string, request: Request, seconds: number, connections: number): Promise<LoadResult> {
  const [cmd, args] = pinned(LOAD_CORE, 'wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, '--timeout', '10s', '-s', script(request), url]);
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
  // One turn for all connections, as with wrk: each connection cycling on its own would send the
  // same body from many connections at once, and gzip would find the repeats.
  let turn = 0;
  const next = (req: autocannon.Request) => ({ ...req, body: request.bodies[turn++ % request.bodies.length] });
  const r = await autocannon({ url, method: 'POST', headers: request.headers, requests: [{ setupRequest: next }], connections, duration: seconds });
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
