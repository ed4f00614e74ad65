// The alert rules in a real Prometheus (Debian's /usr/bin/prometheus) scraping the real server,
// while the fault proxy in front of a real S3 server plays an outage, a stall, AccessDenied, a slow
// S3 that fills the queue, and a burst of 413s; then a rolling deploy. Asserted through the
// Prometheus HTTP API: which alerts fire, within what time, and that they resolve in time.
//
// Time is scaled, so the test takes minutes, not hours: each Prometheus scrapes and evaluates every
// second, and its copy of deploy/prometheus/alerts.yml has every duration (for:, range windows,
// offsets, and the duration thresholds below) multiplied by RATIO. Two run side by side: at 1/15
// a 1 s scrape stands for a 15 s one, at 1/60 for a 1 min one, so both intervals the design
// promises are checked at once. Bounds are the design's (docs/operations.md, "When alerts fire and
// resolve") scaled the same way, plus an unscaled allowance for what the test cannot scale: the
// server's own timing (batch age, retry backoff, UPLOAD_TIMEOUT_MS) and polling.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { refusedPort, startFaultProxy, type Fault } from '../helpers/fault-proxy.js';
import { s3Env, startS3 } from '../helpers/s3.js';
import { post, ROOT, startServer, type RunningServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

const PROMETHEUS = '/usr/bin/prometheus';
const RATIOS = [1 / 15, 1 / 60];
/** Real seconds per test second: a 1 s scrape stands for this interval. */
const interval = (ratio: number) => Math.round(1 / ratio);
/** What the test cannot scale: the server's batch age, retries and timeouts, and polling. */
const ALLOWANCE_MS = 4000;

// Numbers that are durations in seconds, compared with a metric: scaled with the windows.
const DURATION_THRESHOLDS = [/(s3_put_failing_seconds\) > )(\d+)/g, /(process_start_time_seconds < )(\d+)/g];

const missing = (() => {
  try {
    accessSync(PROMETHEUS, constants.X_OK);
    return false;
  } catch {
    return true;
  }
})();

/** alerts.yml with every duration times `ratio`; throws if a duration threshold it expects is gone. */
function scaleRules(rules: string, ratio: number): string {
  const ms = (n: number, unit: string) => `${Math.round(n * { s: 1000, m: 60_000, h: 3_600_000 }[unit]! * ratio)}ms`;
  let scaled = rules
    .replace(/^(\s+for: )(\d+)([smh])$/gm, (_, head: string, n: string, unit: string) => head + ms(Number(n), unit))
    .replace(/\[(\d+)([smh])\]/g, (_, n: string, unit: string) => `[${ms(Number(n), unit)}]`)
    .replace(/offset (\d+)([smh])/g, (_, n: string, unit: string) => `offset ${ms(Number(n), unit)}`);
  for (const pattern of DURATION_THRESHOLDS) {
    if (!pattern.test(scaled)) throw new Error(`alerts.yml no longer has ${pattern}: update DURATION_THRESHOLDS`);
    scaled = scaled.replace(pattern, (_, head: string, n: string) => head + String(Number(n) * ratio));
  }
  return scaled;
}

interface Alert {
  labels: { alertname: string; instance?: string };
  state: 'pending' | 'firing';
}

interface Prometheus {
  ratio: number;
  alerts(): Promise<Alert[]>;
  query(expr: string): Promise<unknown[]>;
}

async function startPrometheus(t: Test, ratio: number, targets: string): Promise<Prometheus> {
  const dir = mkdtempSync(join(tmpdir(), 'ingest-prometheus-'));
  writeFileSync(`${dir}/rules.yml`, scaleRules(readFileSync(`${ROOT}deploy/prometheus/alerts.yml`, 'utf8'), ratio));
  writeFileSync(
    `${dir}/prometheus.yml`,
    [
      'global: { scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s }',
      'rule_files: [rules.yml]',
      'scrape_configs:',
      `  - { job_name: ingest, file_sd_configs: [{ files: ["${targets}"], refresh_interval: 1s }] }`,
      '',
    ].join('\n'),
  );
  const port = await refusedPort();
  const child: ChildProcess = spawn(
    PROMETHEUS,
    [`--config.file=${dir}/prometheus.yml`, `--storage.tsdb.path=${dir}/data`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-4000)));
  const exited = once(child, 'exit');
  // Killed and its files removed however the test ends.
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(kill);
    }
    rmSync(dir, { recursive: true, force: true });
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`prometheus exited (${child.exitCode}): ${stderr}`);
    const ready = await fetch(`${url}/-/ready`).then((r) => r.ok, () => false);
    if (ready) break;
    if (i > 100) throw new Error(`prometheus not ready after 20 s: ${stderr}`);
    await sleep(200);
  }
  const rules = (await (await fetch(`${url}/api/v1/rules`)).json()) as { data: { groups: { rules: unknown[] }[] } };
  if (rules.data.groups.flatMap((g) => g.rules).length === 0) throw new Error(`prometheus loaded no rules: ${stderr}`);
  return {
    ratio,
    alerts: async () => ((await (await fetch(`${url}/api/v1/alerts`)).json()) as { data: { alerts: Alert[] } }).data.alerts,
    query: async (expr) => ((await (await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`)).json()) as { data: { result: unknown[] } }).data.result,
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Steady traffic: one request at a time, 10 events each, about 40 a second. */
function load(t: Test, target: () => string) {
  let stopped = false;
  const statuses: number[] = [];
  const done = (async () => {
    while (!stopped) {
      const events = JSON.stringify(Array.from({ length: 10 }, (_, i) => ({ type: 'load', i })));
      const answer = await post(`${target()}/v1/events`, events, { 'content-type': 'application/json' }).catch(() => undefined);
      if (answer !== undefined) statuses.push(answer.status);
      await sleep(25);
    }
  })();
  t.teardown(async () => {
    stopped = true;
    await done;
  });
  return { statuses };
}

t.test('the scaled copy of the rules: every duration scaled, nothing else changed', async (t) => {
  const rules = readFileSync(`${ROOT}deploy/prometheus/alerts.yml`, 'utf8');
  const scaled = scaleRules(rules, 1 / 60);
  t.notMatch(scaled, /\[\d+[smh]\]|offset \d+[smh](?!s)|for: \d+[smh]$/m, 'no unscaled duration left');
  t.match(scaled, /\[2000ms\]/, '2m is 2 s at 1/60');
  t.match(scaled, /for: 1000ms$/m, 'for: 1m is 1 s');
  t.match(scaled, /s3_put_failing_seconds\) > 0\.5/, 'the 30 s threshold is 0.5 s');
  const skeleton = (text: string) => text.replace(/\d+(\.\d+)?(ms|[smh])?/g, 'N');
  t.equal(skeleton(scaled), skeleton(rules), 'only numbers changed');
});

t.test('the alert rules in a real Prometheus, against the real server under scripted faults', { skip: missing && `${PROMETHEUS} not found: install Debian's prometheus package (.ci/run does)` }, async (t) => {
  t.setTimeout(360_000);
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  let fault: Fault = 'pass';
  proxy.decide = () => fault;
  const env = {
    ...s3Env(proxy.endpoint),
    BATCH_MAX_AGE_MS: '100',
    BATCH_MAX_EVENTS: '50',
    UPLOAD_CONCURRENCY: '1',
    UPLOAD_QUEUE_MAX_BATCHES: '1',
    UPLOAD_TIMEOUT_MS: '1500',
    CHANNEL_MAX_EVENTS: '200',
    MAX_BODY_BYTES: '2048',
    DLQ_REUPLOAD_IDLE_MS: '200',
  };
  const first = await startServer(t, { ...env, DLQ_DIR: tempDir(t, 'dlq') });
  let server: RunningServer = first;
  const targets = `${tempDir(t, 'targets')}/targets.json`;
  const setTargets = (...servers: RunningServer[]) => writeFileSync(targets, JSON.stringify([{ targets: servers.map((s) => `127.0.0.1:${s.port}`) }]));
  setTargets(first);
  const proms = await Promise.all(RATIOS.map((ratio) => startPrometheus(t, ratio, targets)));
  const traffic = load(t, () => server.url);

  // IngestEventLoopLag watches the CPU of this shared test machine, not the design: not asserted.
  const watched = (a: Alert) => a.labels.alertname !== 'IngestEventLoopLag';
  const active = async () => Promise.all(proms.map(async (p) => (await p.alerts()).filter(watched)));

  /** Polls every 250 ms until `each` returns true (then true) or `ms` pass (then false). */
  async function poll(ms: number, each: (alerts: Alert[][], elapsed: number) => boolean): Promise<boolean> {
    const start = Date.now();
    for (;;) {
      if (each(await active(), Date.now() - start)) return true;
      if (Date.now() - start > ms) return false;
      await sleep(250);
    }
  }

  /** Nothing pending or firing, at either ratio, for `ms` of load. */
  async function quiet(t: Test, what: string, ms: number): Promise<void> {
    const seen = new Set<string>();
    await poll(ms, (alerts) => {
      alerts.forEach((list, i) => list.forEach((a) => seen.add(`${a.labels.alertname} ${a.state} at 1/${interval(proms[i]!.ratio)}`)));
      return false;
    });
    t.same([...seen], [], `${what}: no alert pending or firing`);
  }

  interface Expect {
    /** Alerts that must fire, with the design's bounds in real seconds at scrape = evaluation = S. */
    fire: Record<string, { within: (S: number) => number; resolve: (S: number) => number }>;
    /** Alerts that may come too. */
    may?: string[];
  }

  async function scenario(t: Test, name: string, start: () => void, stop: () => unknown, expect: Expect): Promise<void> {
    await t.test(name, async (t) => {
      // A clean slate: whatever the last scenario left has resolved.
      t.ok(await poll(30_000, (alerts) => alerts.every((l) => l.length === 0)), 'no alert active before the fault');
      const names = Object.keys(expect.fire);
      const allowed = new Set([...names, ...(expect.may ?? [])]);
      const bound = (ratio: number, seconds: number) => seconds * 1000 * ratio + ALLOWANCE_MS;
      const fired = proms.map(() => new Map<string, number>());
      const unexpected = new Set<string>();
      const note = (alerts: Alert[][], elapsed: number) =>
        alerts.forEach((list, i) =>
          list.forEach((a) => {
            if (!allowed.has(a.labels.alertname)) unexpected.add(`${a.labels.alertname} at 1/${interval(proms[i]!.ratio)}`);
            if (a.state === 'firing' && !fired[i]!.has(a.labels.alertname)) fired[i]!.set(a.labels.alertname, elapsed);
          }),
        );
      const longest = Math.max(...proms.flatMap((p) => names.map((n) => bound(p.ratio, expect.fire[n]!.within(interval(p.ratio))))));
      start();
      await poll(longest, (alerts, elapsed) => {
        note(alerts, elapsed);
        return fired.every((m) => names.every((n) => m.has(n)));
      });
      await stop();
      const resolved = proms.map(() => new Map<string, number>());
      const longestResolve = Math.max(...proms.flatMap((p) => names.map((n) => bound(p.ratio, expect.fire[n]!.resolve(interval(p.ratio))))));
      await poll(longestResolve, (alerts, elapsed) => {
        note(alerts, -1);
        alerts.forEach((list, i) => {
          for (const n of names) if (!resolved[i]!.has(n) && !list.some((a) => a.labels.alertname === n)) resolved[i]!.set(n, elapsed);
        });
        return alerts.every((l) => l.length === 0);
      });
      for (const [i, p] of proms.entries()) {
        const S = interval(p.ratio);
        for (const n of names) {
          const at = fired[i]!.get(n);
          const { within, resolve } = expect.fire[n]!;
          t.ok(at !== undefined && at <= bound(p.ratio, within(S)), `1/${S}: ${n} fires within ${within(S)} s (scaled: ${bound(p.ratio, within(S))} ms); after ${at} ms`);
          const gone = resolved[i]!.get(n);
          t.ok(gone !== undefined && gone <= bound(p.ratio, resolve(S)), `1/${S}: ${n} resolves within ${resolve(S)} s (scaled: ${bound(p.ratio, resolve(S))} ms); after ${gone} ms`);
        }
      }
      t.same([...unexpected], [], 'no other alert');
    });
  }

  // The design's bounds, real seconds, for scrape = evaluation = S (docs/operations.md).
  const page = { within: (S: number) => 30 + 2 * S, resolve: (S: number) => 2 * S };
  const refusal = { within: (S: number) => 2 * S, resolve: (S: number) => 2 * S };
  const warning = { within: (S: number) => 60 + 3 * S, resolve: (S: number) => 120 + 2 * S };
  const fullWindow = { within: (S: number) => 120 + 2 * S, resolve: (S: number) => 2 * S };

  await t.test('healthy, under load: no alert', async (t) => {
    await quiet(t, 'healthy', 12_000);
    t.ok(traffic.statuses.filter((s) => s === 202).length > 100, 'the load was answered 202');
  });

  await scenario(t, 'S3 slow but answering: the queue fills, only IngestQueueFull fires', () => (fault = { delayMs: 300 }), () => (fault = 'pass'), {
    fire: { IngestQueueFull: warning },
  });

  let bursting = false;
  let burst: Promise<void> = Promise.resolve();
  const tooLarge = JSON.stringify(Array.from({ length: 60 }, () => ({ pad: 'x'.repeat(60) })));
  await scenario(
    t,
    'a burst of 413s: IngestBodyTooLargeBurst',
    () => {
      bursting = true;
      burst = (async () => {
        while (bursting) {
          await post(`${server.url}/v1/events`, tooLarge, { 'content-type': 'application/json' }).catch(() => undefined);
          await sleep(40);
        }
      })();
    },
    async () => {
      bursting = false;
      await burst;
    },
    { fire: { IngestBodyTooLargeBurst: { within: (S) => 120 + 3 * S, resolve: (S) => 120 + 2 * S } } },
  );

  await scenario(t, 'S3 down (500 InternalError): IngestStoredStalled pages', () => (fault = { status: 500, code: 'InternalError' }), () => (fault = 'pass'), {
    fire: { IngestStoredStalled: page },
    may: ['IngestS3PutErrors', 'IngestDlqGrowingFast', 'IngestQueueFull'],
  });

  await scenario(
    t,
    'S3 hangs (PUTs never answered): IngestStoredStalled pages',
    () => (fault = 'stall'),
    () => {
      fault = 'pass';
      proxy.release();
    },
    { fire: { IngestStoredStalled: page }, may: ['IngestS3PutErrors', 'IngestDlqGrowingFast', 'IngestQueueFull'] },
  );

  await scenario(t, 'AccessDenied: IngestS3AccessDenied pages', () => (fault = { status: 403, code: 'AccessDenied' }), () => (fault = 'pass'), {
    fire: { IngestS3AccessDenied: refusal, IngestDlqGrowingFast: fullWindow },
    may: ['IngestS3PutErrors', 'IngestStoredStalled', 'IngestQueueFull'],
  });

  const whole = t;
  await t.test('a rolling deploy: a new task takes the traffic, the old one stops on SIGTERM; no alert', async (t) => {
    t.ok(await poll(30_000, (alerts) => alerts.every((l) => l.length === 0)), 'no alert active before the deploy');
    // Owned by the whole test, not this step: the Grafana queries below need it still scraped
    // (stopped at the end of this step, its gauges went stale under them, on a loaded machine).
    const next = await startServer(whole, { ...env, DLQ_DIR: tempDir(whole, 'dlq') });
    setTargets(first, next);
    const watching = quiet(t, 'during and after the deploy', 12_000);
    await sleep(2000);
    server = next;
    const exit = await first.stop('SIGTERM');
    t.equal(exit.code, 0, 'the old task shut down cleanly');
    setTargets(next);
    await watching;
  });

  await t.test('every Grafana query returns data at this scrape interval', async (t) => {
    const dashboard = JSON.parse(readFileSync(`${ROOT}deploy/grafana/dashboard.json`, 'utf8')) as { panels: { title: string; targets: { expr: string }[] }[] };
    // Grafana's $__rate_interval is at least four scrape intervals: 4 s here, for a 1 min scrape 4m.
    for (const { title, targets: queries } of dashboard.panels) {
      for (const { expr } of queries) {
        if (/> 0$/.test(expr)) continue; // only the codes that occur: empty while S3 is healthy
        const result = await proms[1]!.query(expr.replaceAll('$__rate_interval', '4s'));
        t.ok(result.length > 0, `${title}: ${expr}`);
      }
    }
  });
});
