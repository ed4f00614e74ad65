// The alert rules in a real Prometheus (Debian's /usr/bin/prometheus) scraping the real server,
// while the fault proxy in front of a real S3 server plays an outage, a stall, AccessDenied, a slow
// S3 that fills the queue, and a burst of 413s; then a rolling deploy. Asserted through the
// Prometheus HTTP API: which alerts fire, within what time, and that they resolve in time.
//
// Time is scaled, so the test takes minutes, not hours: each Prometheus scrapes every second, and
// its copy of deploy/prometheus/alerts.yml has every duration (for:, range windows, offsets, and
// the duration thresholds below) multiplied by its ratio. Two run side by side: at 1/15 a 1 s
// scrape and evaluation stand for 15 s ones (S = E = 15 s); at 1/60 a 1 s scrape stands for 1 min
// and a 500 ms evaluation for the 30 s deploy/README.md asks for (S = 1 min, E = 30 s), so both
// ends of the design are checked at once. Bounds are the design's (docs/operations.md, "When
// alerts fire and resolve") scaled the same way, plus a small allowance that is not scaled, and
// is reported in design seconds with each assertion so it is plain what it stands for:
// - SLACK_MS: polling (POLL_MS), the answer of the alerts API, the time a scrape takes, and the
//   server's batch age (BATCH_MAX_AGE_MS 100 ms) before the first failed attempt;
// - the server's UPLOAD_TIMEOUT_MS where the design's bound names it (a stall is seen once the
//   first attempt times out);
// - one scrape interval for each scrape that failed during the measurement (a loaded machine can
//   miss one; Prometheus then marks the series stale), plus the rule's `for:`, which the gap can
//   restart: counted from `up`, not assumed, so a run with no missed scrape gets no credit.
// Resolution is timed from the moment the server has recovered (its s3_put_failing_seconds back to
// 0 and the traffic answered 202 again), the design's "after S3 takes a PUT again": the server's
// retry backoff before that moment is its own timing, not the rules'.
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
/** Each Prometheus: its time ratio and its evaluation interval in test ms (the scrape is 1 s). */
const SETUPS = [
  { ratio: 1 / 15, evaluationMs: 1000 },
  { ratio: 1 / 60, evaluationMs: 500 },
];
/** Real seconds per test second: a 1 s scrape stands for this interval. */
const interval = (ratio: number) => Math.round(1 / ratio);
const SCRAPE_MS = 1000;
const POLL_MS = 100;
/** Not scaled: polling, the alerts API, a scrape's duration, the server's batch age (see the top). */
const SLACK_MS = 500;
const UPLOAD_TIMEOUT_MS = 1500;

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
  /** Evaluation interval in test ms. */
  evaluationMs: number;
  alerts(): Promise<Alert[]>;
  query(expr: string): Promise<unknown[]>;
}

async function startPrometheus(t: Test, ratio: number, evaluationMs: number, targets: string): Promise<Prometheus> {
  const dir = mkdtempSync(join(tmpdir(), 'ingest-prometheus-'));
  writeFileSync(`${dir}/rules.yml`, scaleRules(readFileSync(`${ROOT}deploy/prometheus/alerts.yml`, 'utf8'), ratio));
  writeFileSync(
    `${dir}/prometheus.yml`,
    [
      `global: { scrape_interval: ${SCRAPE_MS}ms, scrape_timeout: ${SCRAPE_MS - 100}ms, evaluation_interval: ${evaluationMs}ms }`,
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
    evaluationMs,
    alerts: async () => ((await (await fetch(`${url}/api/v1/alerts`)).json()) as { data: { alerts: Alert[] } }).data.alerts,
    query: async (expr) => ((await (await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`)).json()) as { data: { result: unknown[] } }).data.result,
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Steady traffic: one request at a time, 10 events each, about 40 a second. */
function load(t: Test, target: () => string) {
  let stopped = false;
  const statuses: number[] = [];
  /** When the last 202 came; when each 503 queue_full came. */
  const last = { accepted: 0 };
  const queueFullAt: number[] = [];
  const done = (async () => {
    while (!stopped) {
      const events = JSON.stringify(Array.from({ length: 10 }, (_, i) => ({ type: 'load', i })));
      const answer = await post(`${target()}/v1/events`, events, { 'content-type': 'application/json' }).catch(() => undefined);
      if (answer !== undefined) statuses.push(answer.status);
      if (answer?.status === 202) last.accepted = Date.now();
      if (answer?.status === 503 && answer.json.error === 'queue_full') queueFullAt.push(Date.now());
      await sleep(25);
    }
  })();
  t.teardown(async () => {
    stopped = true;
    await done;
  });
  return { statuses, last, queueFullAt };
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
    UPLOAD_TIMEOUT_MS: String(UPLOAD_TIMEOUT_MS),
    CHANNEL_MAX_EVENTS: '200',
    MAX_BODY_BYTES: '2048',
    DLQ_REUPLOAD_IDLE_MS: '200',
  };
  const first = await startServer(t, { ...env, DLQ_DIR: tempDir(t, 'dlq') });
  let server: RunningServer = first;
  const targets = `${tempDir(t, 'targets')}/targets.json`;
  /** Owns what must outlive a subtest: the new task of the rolling deploy serves the last subtest too. */
  const whole = t;
  const setTargets = (...servers: RunningServer[]) => writeFileSync(targets, JSON.stringify([{ targets: servers.map((s) => new URL(s.metricsUrl).host) }]));
  setTargets(first);
  const proms = await Promise.all(SETUPS.map(({ ratio, evaluationMs }) => startPrometheus(t, ratio, evaluationMs, targets)));
  const traffic = load(t, () => server.url);

  // IngestEventLoopLag watches the CPU of this shared test machine, not the design: not asserted.
  const watched = (a: Alert) => a.labels.alertname !== 'IngestEventLoopLag';
  const active = async () => Promise.all(proms.map(async (p) => (await p.alerts()).filter(watched)));

  /** Polls every POLL_MS until `each` returns true (then true) or `ms` pass (then false). */
  async function poll(ms: number, each: (alerts: Alert[][], elapsed: number) => boolean, start = Date.now()): Promise<boolean> {
    for (;;) {
      if (each(await active(), Date.now() - start)) return true;
      if (Date.now() - start > ms) return false;
      await sleep(POLL_MS);
    }
  }

  /**
   * Scrapes that failed in the last `ms`, for the target that missed most, as Prometheus `p` saw
   * them: a failed scrape (a timeout, a refused connection) is an `up` sample of 0.
   */
  async function missedScrapes(p: Prometheus, ms: number): Promise<number> {
    const range = `${Math.ceil(ms / SCRAPE_MS) * SCRAPE_MS}ms`;
    const [row] = (await p.query(`max(count_over_time(up[${range}]) - sum_over_time(up[${range}]))`)) as { value: [number, string] }[];
    // No answer credits nothing: the bounds then hold as if every scrape had come.
    return row === undefined ? 0 : Math.max(0, Math.round(Number(row.value[1])));
  }

  /** The server has recovered: S3 took a PUT since the fault (the gauge is back at 0) and the front answers 202 again. */
  async function recovered(since: number): Promise<number> {
    for (;;) {
      const failing = await server.metric('s3_put_failing_seconds').catch(() => 1);
      if (failing === 0 && traffic.last.accepted > since) return Date.now();
      if (Date.now() - since > 30_000) throw new Error('the server has not recovered 30 s after the fault was lifted');
      await sleep(50);
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

  interface Bounds {
    /** The design's bound in real seconds, for scrape interval S and evaluation interval E. */
    within: (S: number, E: number) => number;
    resolve: (S: number, E: number) => number;
    /** Test ms added to the scaled bound for the server's own timing the design names (UPLOAD_TIMEOUT_MS). */
    unscaledMs?: (ratio: number) => number;
    /**
     * When the design's clock starts, if not at the fault: IngestQueueFull's at the first 503
     * queue_full, as the time the queue takes to fill is the server's and the load's, not the rules'.
     */
    from?: (startedAt: number) => number | undefined;
    /** The rule's `for:` in real seconds: a missed scrape can empty a pending alert, which then starts over. */
    forSeconds?: number;
  }

  interface Expect {
    /** Alerts that must fire, with the design's bounds. */
    fire: Record<string, Bounds>;
    /** Alerts that may come too. */
    may?: string[];
  }

  async function scenario(t: Test, name: string, start: () => void, stop: () => unknown, expect: Expect): Promise<void> {
    await t.test(name, async (t) => {
      // A clean slate: whatever the last scenario left has resolved.
      t.ok(await poll(30_000, (alerts) => alerts.every((l) => l.length === 0)), 'no alert active before the fault');
      const names = Object.keys(expect.fire);
      const allowed = new Set([...names, ...(expect.may ?? [])]);
      const E = (p: Prometheus) => (p.evaluationMs / 1000) * interval(p.ratio);
      /** Test ms for a design bound of `seconds`, before missed scrapes. */
      const bound = (p: Prometheus, seconds: number, unscaledMs = 0) => Math.round(seconds * 1000 * p.ratio + unscaledMs + SLACK_MS);
      const fireBound = (p: Prometheus, n: string) => {
        const { within, unscaledMs } = expect.fire[n]!;
        return bound(p, within(interval(p.ratio), E(p)), unscaledMs?.(p.ratio));
      };
      const resolveBound = (p: Prometheus, n: string) => bound(p, expect.fire[n]!.resolve(interval(p.ratio), E(p)));
      const fired = proms.map(() => new Map<string, number>());
      const unexpected = new Set<string>();
      const note = (alerts: Alert[][], elapsed: number) =>
        alerts.forEach((list, i) =>
          list.forEach((a) => {
            if (!allowed.has(a.labels.alertname)) unexpected.add(`${a.labels.alertname} at 1/${interval(proms[i]!.ratio)}`);
            if (a.state === 'firing' && !fired[i]!.has(a.labels.alertname)) fired[i]!.set(a.labels.alertname, elapsed);
          }),
        );
      // Long enough for the slowest bound with a few missed scrapes; the assertions below hold each to its own.
      const longest = Math.max(...proms.flatMap((p) => names.map((n) => fireBound(p, n) + (expect.fire[n]!.forSeconds ?? 0) * 1000 * p.ratio))) + 3 * SCRAPE_MS;
      const startedAt = Date.now();
      start();
      await poll(longest + 5000 * Number(names.some((n) => expect.fire[n]!.from !== undefined)), (alerts, elapsed) => {
        note(alerts, elapsed);
        return fired.every((m) => names.every((n) => m.has(n)));
      });
      /** Test ms from the fault to where the design's clock for `n` starts. */
      const offset = (n: string) => {
        const from = expect.fire[n]!.from?.(startedAt);
        return from === undefined ? 0 : from - startedAt;
      };
      const fireMissed = await Promise.all(proms.map((p) => missedScrapes(p, Date.now() - startedAt)));
      const stoppedAt = Date.now();
      await stop();
      const recoveredAt = await recovered(stoppedAt);
      // Resolved: absent from then on. A missed scrape can empty a firing alert for one evaluation, so
      // the wait ends only once every alert has been gone for longer than a scrape and an evaluation.
      const resolved = proms.map(() => new Map<string, number>());
      const longestResolve = Math.max(...proms.flatMap((p) => names.map((n) => resolveBound(p, n)))) + 3 * SCRAPE_MS;
      let quietSince: number | undefined;
      await poll(
        longestResolve + 2 * SCRAPE_MS,
        (alerts, elapsed) => {
          note(alerts, -1);
          alerts.forEach((list, i) => {
            for (const n of names) {
              if (list.some((a) => a.labels.alertname === n)) resolved[i]!.delete(n);
              else if (!resolved[i]!.has(n)) resolved[i]!.set(n, elapsed);
            }
          });
          if (alerts.some((l) => l.length > 0)) quietSince = undefined;
          else quietSince ??= elapsed;
          return quietSince !== undefined && elapsed - quietSince > 2 * SCRAPE_MS;
        },
        recoveredAt,
      );
      const resolveMissed = await Promise.all(proms.map((p) => missedScrapes(p, Date.now() - recoveredAt)));
      t.comment(`fault over ${recoveredAt - stoppedAt} ms after it was lifted (the server's retry backoff and batch age); missed scrapes: ${fireMissed.join(', ')} while firing, ${resolveMissed.join(', ')} while resolving`);
      for (const [i, p] of proms.entries()) {
        const S = interval(p.ratio);
        const at = `1/${S} (S = ${S} s, E = ${E(p)} s)`;
        /**
         * A test-ms bound, with one scrape added per missed one (and the rule's `for:`, which a missed
         * scrape can restart), and what it stands for in design seconds.
         */
        const say = (ms: number, missed: number, forSeconds = 0) => {
          const total = Math.round(ms + missed * (SCRAPE_MS + forSeconds * 1000 * p.ratio));
          return { total, text: `${total} ms, ${Math.round(total / 1000 / p.ratio)} s in design time${missed > 0 ? `, with ${missed} missed scrape(s)` : ''}` };
        };
        for (const n of names) {
          const { within, resolve } = expect.fire[n]!;
          const firedAt = fired[i]!.get(n);
          const f = say(fireBound(p, n), fireMissed[i]!, expect.fire[n]!.forSeconds);
          const timeoutMs = expect.fire[n]!.unscaledMs?.(p.ratio) ?? 0;
          if (timeoutMs > 0) f.text += `, of which ${timeoutMs} ms for the test's UPLOAD_TIMEOUT_MS (${UPLOAD_TIMEOUT_MS} ms, not scaled) beyond the 30 s`;
          const clock = offset(n);
          const since = clock === 0 ? '' : ` from ${expect.fire[n]!.from === firstQueueFull ? 'the first 503 queue_full' : 'its start'}, ${clock} ms after the fault`;
          t.ok(firedAt !== undefined && firedAt - clock <= f.total, `${at}: ${n} fires within ${within(S, E(p))} s${since} (bound ${f.text}); after ${firedAt === undefined ? undefined : firedAt - clock} ms`);
          const gone = resolved[i]!.get(n);
          const r = say(resolveBound(p, n), resolveMissed[i]!);
          t.ok(gone !== undefined && gone <= r.total, `${at}: ${n} resolves within ${resolve(S, E(p))} s of the recovery (bound ${r.text}); after ${gone} ms`);
        }
      }
      t.same([...unexpected], [], 'no other alert');
    });
  }

  // The design's bounds, real seconds, for scrape interval S and evaluation interval E (docs/operations.md).
  const page: Bounds = { within: (S, E) => 30 + S + E, resolve: (S, E) => S + E };
  // A stall is seen once the first attempt times out: at max(30 s, UPLOAD_TIMEOUT_MS) + S + E.
  // UPLOAD_TIMEOUT_MS is 10 s by default, under the 30 s; here it is what it is, not scaled.
  const stall: Bounds = { ...page, unscaledMs: (ratio) => Math.max(0, UPLOAD_TIMEOUT_MS - 30_000 * ratio) };
  const refusal: Bounds = { within: (S, E) => S + E, resolve: (S, E) => S + E };
  // for: 1m: the first refusal is seen at the next scrape, pending at the next evaluation, firing at
  // the first evaluation 1m later.
  const firstQueueFull = (startedAt: number) => traffic.queueFullAt.find((at) => at >= startedAt);
  const warning: Bounds = { within: (S, E) => 60 + S + 2 * E, resolve: (S, E) => 120 + S + E, from: firstQueueFull, forSeconds: 60 };
  const fullWindow: Bounds = { within: (S, E) => 120 + S + E, resolve: (S, E) => S + E };

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
    { fire: { IngestBodyTooLargeBurst: { within: (S, E) => 120 + S + 2 * E, resolve: (S, E) => 120 + S + E, forSeconds: 120 } } },
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
    { fire: { IngestStoredStalled: stall }, may: ['IngestS3PutErrors', 'IngestDlqGrowingFast', 'IngestQueueFull'] },
  );

  await scenario(t, 'AccessDenied: IngestS3AccessDenied pages', () => (fault = { status: 403, code: 'AccessDenied' }), () => (fault = 'pass'), {
    fire: { IngestS3AccessDenied: refusal, IngestDlqGrowingFast: fullWindow },
    may: ['IngestS3PutErrors', 'IngestStoredStalled', 'IngestQueueFull'],
  });

  await t.test('a rolling deploy: a new task takes the traffic, the old one stops on SIGTERM; no alert', async (t) => {
    t.ok(await poll(30_000, (alerts) => alerts.every((l) => l.length === 0)), 'no alert active before the deploy');
    // Owned by the whole test: stopped at the end of this subtest, it would leave the dashboard's
    // queries below with stale series (this made them flake, as the stop raced the queries).
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
    t.ok(await server.metric('s3_put_failing_seconds').then(() => true, () => false), 'the task is still running');
    // A scrape missed under load makes the gauges stale until the next one: each query may take a few scrapes.
    for (const { title, targets: queries } of dashboard.panels) {
      for (const { expr } of queries) {
        if (/> 0$/.test(expr)) continue; // only the codes that occur: empty while S3 is healthy
        let result: unknown[] = [];
        let tries = 0;
        const until = Date.now() + 5 * SCRAPE_MS;
        do {
          if (tries++ > 0) await sleep(200);
          result = await proms[1]!.query(expr.replaceAll('$__rate_interval', '4s'));
        } while (result.length === 0 && Date.now() < until);
        t.ok(result.length > 0, `${title}: ${expr}${tries > 1 ? ` (after ${tries} tries)` : ''}`);
      }
    }
  });
});
