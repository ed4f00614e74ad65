// The Grafana dashboard: importable JSON, made by generate.mjs, whose every query uses metrics the
// server exports, windows that hold samples at any scrape interval, and a legend for every series.
// (test/deploy/alerts-live.ops.test.ts, in npm run test:ops, runs every query in a real Prometheus too.)
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import t from 'tap';
import { startInProcess } from '../helpers/in-process.js';
import { metricsIn } from '../helpers/promql.js';
import { startS3 } from '../helpers/s3.js';
import { ROOT } from '../helpers/server.js';

const text = readFileSync(`${ROOT}deploy/grafana/dashboard.json`, 'utf8');
const dashboard = JSON.parse(text) as { uid: string; panels: { title: string; targets: { expr: string; legendFormat?: string }[] }[] };
const targets = dashboard.panels.flatMap((p) => p.targets.map((q) => ({ panel: p.title, ...q })));

t.test('every dashboard query uses exported metrics; the JSON is complete', async (t) => {
  t.ok(dashboard.uid);
  t.ok(dashboard.panels.length >= 12, `${dashboard.panels.length} panels`);
  const s3 = await startS3(t);
  const server = await startInProcess(t, s3.env);
  const exported = await server.exported();
  for (const name of metricsIn(targets.map((q) => q.expr))) t.ok(exported.has(name.replace(/_bucket$/, '')), `${name} is exported`);
});

t.test('dashboard.json is what generate.mjs makes', async (t) => {
  t.equal(execFileSync(process.execPath, [`${ROOT}deploy/grafana/generate.mjs`], { encoding: 'utf8' }), text);
});

t.test('every window is $__rate_interval, every series has a legend, PUT latency is split by result', async (t) => {
  for (const { panel, expr, legendFormat } of targets) {
    for (const [window] of expr.matchAll(/\[[^\]]*\]/g)) t.equal(window, '[$__rate_interval]', `${panel}: ${expr}`);
    t.ok(legendFormat !== undefined && legendFormat !== '', `${panel}: ${expr} has a legend`);
    // A legend that names a label the query keeps; otherwise Grafana would print the raw series.
    for (const [, label] of (legendFormat ?? '').matchAll(/\{\{(\w+)\}\}/g)) t.match(expr, new RegExp(`by \\([^)]*\\b${label}\\b`), `${panel}: {{${label}}} is kept by the query`);
  }
  const latency = targets.filter((q) => q.expr.includes('s3_put_duration_seconds_bucket'));
  t.ok(latency.length > 0 && latency.every((q) => /by \(le, result\)/.test(q.expr)), 'latency by result: failed attempts do not pass for healthy ones');
});
