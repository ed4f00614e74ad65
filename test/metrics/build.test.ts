// ingest_build_info: one gauge at 1, labelled with the version given and this Node.js version.
import { Registry } from 'prom-client';
import t from 'tap';
import { observeBuild } from '../../src/metrics/build.js';

t.test('a constant 1 labelled with the server version and the Node.js version', async (t) => {
  const registry = new Registry();
  observeBuild(registry, '1.2.3');
  const [metric, ...others] = await registry.getMetricsAsJSON();
  t.equal(others.length, 0, 'one metric');
  t.match(metric, { name: 'ingest_build_info', type: 'gauge', help: /labels: the server version and the Node\.js version/ });
  t.strictSame(metric!.values.map((v) => ({ labels: v.labels, value: v.value })), [{ labels: { version: '1.2.3', node: process.version }, value: 1 }]);
  t.match(await registry.metrics(), `ingest_build_info{version="1.2.3",node="${process.version}"} 1\n`, 'as /metrics prints it');
});

t.test('registers in the registry given, not the global one', async (t) => {
  const { register } = await import('prom-client');
  const registry = new Registry();
  observeBuild(registry, '0.0.1');
  t.equal(register.getSingleMetric('ingest_build_info'), undefined);
  t.ok(registry.getSingleMetric('ingest_build_info'));
  t.throws(() => observeBuild(registry, '0.0.1'), /already been registered/, 'once per registry');
});
