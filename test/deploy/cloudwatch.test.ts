// The CloudWatch alarms: valid JSON, one for each Prometheus alert, on metrics the EMF lines send,
// with runbook links that share the Prometheus rules' base and reach a section that exists.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { EMF_METRICS } from '../../src/metrics/emf.js';
import { runbookAnchors, runbookBase } from '../helpers/runbook.js';
import { ROOT } from '../helpers/server.js';

const template = JSON.parse(readFileSync(`${ROOT}deploy/cloudwatch/alarms.json`, 'utf8')) as { Resources: Record<string, { Type: string; Properties: Record<string, unknown> }> };
const alarms = Object.entries(template.Resources);

t.test('every alarm watches a metric the server sends as EMF, and links a runbook section', async (t) => {
  const sent = new Set(EMF_METRICS.map((m) => m.name));
  const anchors = runbookAnchors();
  const base = runbookBase();
  for (const [id, { Type, Properties }] of alarms) {
    t.equal(Type, 'AWS::CloudWatch::Alarm');
    const metrics = Properties.MetricName !== undefined ? [Properties.MetricName as string] : (Properties.Metrics as { MetricStat?: { Metric: { MetricName: string } } }[]).flatMap((m) => (m.MetricStat ? [m.MetricStat.Metric.MetricName] : []));
    for (const metric of metrics) t.ok(sent.has(metric), `${id}: ${metric} is sent as EMF`);
    const link = / Runbook: (\S+)$/.exec(Properties.AlarmDescription as string)?.[1] ?? '';
    t.equal(link, `${base}#ingest${id.toLowerCase()}`, `${id}: an absolute link from the one base`);
    t.ok(anchors.has(`ingest${id.toLowerCase()}`), `${id}: runbook section exists`);
  }
});

t.test('the alarms mirror the Prometheus alerts: one each, named alike', async (t) => {
  const rules = readFileSync(`${ROOT}deploy/prometheus/alerts.yml`, 'utf8');
  const alerts = [...rules.matchAll(/- alert: Ingest(\w+)/g)].map((m) => m[1]!);
  t.same(alarms.map(([id]) => id).sort(), alerts.sort());
});

t.test('every alarm notifies when it resolves too, as Alertmanager does', async (t) => {
  for (const [id, { Properties }] of alarms) {
    t.same(Properties.AlarmActions, [{ Ref: 'AlarmTopicArn' }], `${id}: notifies when it fires`);
    t.same(Properties.OKActions, Properties.AlarmActions, `${id}: and when it resolves`);
  }
});

t.test('DlqFilesHigh keeps the rule\'s "and still growing": above 1000 and above the 5 minutes before', async (t) => {
  const rules = readFileSync(`${ROOT}deploy/prometheus/alerts.yml`, 'utf8');
  t.match(rules, /expr: dlq_files_current > 1000 and deriv\(dlq_files_current\[10m\]\) > 0\n/, 'the Prometheus rule this mirrors');
  const high = template.Resources.DlqFilesHigh!.Properties as { Metrics: { Id: string; Expression?: string; ReturnData: boolean; MetricStat?: { Metric: { MetricName: string }; Period: number; Stat: string } }[]; EvaluationPeriods: number };
  const files = high.Metrics.find((m) => m.Id === 'files')!;
  t.match(files.MetricStat, { Metric: { MetricName: 'dlq_files_current' }, Period: 300, Stat: 'Maximum' });
  t.same(high.Metrics.filter((m) => m.ReturnData).map((m) => m.Expression), ['IF(files > 1000 AND DIFF(files) > 0, 1, 0)']);
  t.ok(high.EvaluationPeriods >= 2, 'DIFF has the period before the last to compare with');
});

t.test('WalNearlyFull keeps the rule\'s ratio: the fullest task\'s WAL above 80% of WAL_MAX_BYTES for 2 minutes', async (t) => {
  const rules = readFileSync(`${ROOT}deploy/prometheus/alerts.yml`, 'utf8');
  t.match(rules, /expr: wal_bytes_current \/ wal_max_bytes > 0\.8\n\s+for: 2m\n/, 'the Prometheus rule this mirrors');
  const full = template.Resources.WalNearlyFull!.Properties as { Metrics: { Id: string; Expression?: string; ReturnData: boolean; MetricStat?: { Metric: { MetricName: string }; Period: number; Stat: string } }[]; EvaluationPeriods: number; DatapointsToAlarm: number };
  t.match(full.Metrics.find((m) => m.Id === 'bytes')!.MetricStat, { Metric: { MetricName: 'wal_bytes_current' }, Period: 60, Stat: 'Maximum' });
  t.match(full.Metrics.find((m) => m.Id === 'limit')!.MetricStat, { Metric: { MetricName: 'wal_max_bytes' }, Period: 60, Stat: 'Maximum' });
  t.same(full.Metrics.filter((m) => m.ReturnData).map((m) => m.Expression), ['IF(limit > 0 AND bytes / limit > 0.8, 1, 0)']);
  t.equal(full.EvaluationPeriods, 2);
  t.equal(full.DatapointsToAlarm, 2);
});
