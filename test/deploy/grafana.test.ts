// The Grafana dashboard: importable JSON whose every query uses metrics the server exports.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { metricsIn } from '../helpers/promql.js';
import { startS3 } from '../helpers/s3.js';
import { ROOT, startServer } from '../helpers/server.js';

t.test('every dashboard query uses exported metrics; the JSON is complete', async (t) => {
  const dashboard = JSON.parse(readFileSync(`${ROOT}deploy/grafana/dashboard.json`, 'utf8')) as { uid: string; panels: { title: string; targets: { expr: string }[] }[] };
  t.ok(dashboard.uid);
  const exprs = dashboard.panels.flatMap((p) => p.targets.map((q) => q.expr));
  t.ok(dashboard.panels.length >= 12, `${dashboard.panels.length} panels`);
  const s3 = await startS3(t);
  const server = await startServer(t, s3.env);
  const exported = await server.exported();
  for (const name of metricsIn(exprs)) t.ok(exported.has(name.replace(/_bucket$/, '')), `${name} is exported`);
});
