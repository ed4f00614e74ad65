// The CloudWatch alarms: valid JSON, on metrics the EMF lines send, with runbook anchors that exist.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { EMF_METRICS } from '../../src/metrics/emf.js';
import { ROOT } from '../helpers/server.js';

t.test('every alarm watches a metric the server sends as EMF, and links a runbook section', async (t) => {
  const template = JSON.parse(readFileSync(`${ROOT}deploy/cloudwatch/alarms.json`, 'utf8')) as { Resources: Record<string, { Type: string; Properties: Record<string, unknown> }> };
  const sent = new Set(EMF_METRICS.map((m) => m.name));
  const runbook = readFileSync(`${ROOT}docs/operations.md`, 'utf8').toLowerCase();
  const alarms = Object.entries(template.Resources);
  t.ok(alarms.length >= 7, `${alarms.length} alarms`);
  for (const [id, { Type, Properties }] of alarms) {
    t.equal(Type, 'AWS::CloudWatch::Alarm');
    const metrics = Properties.MetricName !== undefined ? [Properties.MetricName as string] : (Properties.Metrics as { MetricStat?: { Metric: { MetricName: string } } }[]).flatMap((m) => (m.MetricStat ? [m.MetricStat.Metric.MetricName] : []));
    for (const metric of metrics) t.ok(sent.has(metric), `${id}: ${metric} is sent as EMF`);
    const anchor = /#(\S+)$/.exec(Properties.AlarmDescription as string)![1]!;
    t.ok(runbook.includes(`\n## ${anchor}\n`), `${id}: runbook section #${anchor}`);
  }
});
