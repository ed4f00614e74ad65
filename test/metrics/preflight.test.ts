// s3_preflight_ok: read from the preflight's answer at each scrape, 1 once it succeeded, else 0.
import { Registry } from 'prom-client';
import t from 'tap';
import { observePreflight } from '../../src/metrics/preflight.js';

t.test('0 while the preflight has not succeeded, 1 from the scrape after it did', async (t) => {
  const registry = new Registry();
  let ok = false;
  observePreflight(registry, () => ok);
  const value = async () => (await registry.getSingleMetric('s3_preflight_ok')!.get()).values.map((v) => v.value);
  t.strictSame(await value(), [0]);
  ok = true;
  t.strictSame(await value(), [1], 'read at scrape time');
  ok = false;
  t.strictSame(await value(), [0]);
  const [metric] = await registry.getMetricsAsJSON();
  t.match(metric, { name: 's3_preflight_ok', type: 'gauge', help: /^1 once the start-up S3 preflight PUT succeeded; 0 while it has not/ });
});
