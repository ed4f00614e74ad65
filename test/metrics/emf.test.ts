// METRICS_EMF=true: Embedded Metric Format lines on stdout, with increases that add up, and names
// that are the server's own metrics.
import t from 'tap';
import { EMF_METRICS } from '../../src/metrics/emf.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { s3Env, startS3 } from '../helpers/s3.js';
import { eventually, startServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

t.test('EMF lines carry the key metrics; counters as increases per interval', async (t) => {
  const s3 = await startS3(t);
  // ACK_LEVEL=disk: every metric of the default and the WAL's.
  const server = await startServer(t, { ...s3.env, ACK_LEVEL: 'disk', WAL_MAX_BYTES: '67108864', METRICS_EMF: 'true', METRICS_EMF_INTERVAL_MS: '1000', BATCH_MAX_AGE_MS: '100' });
  t.equal((await server.post('[{"a":1},{"a":2},{"a":3}]')).status, 202);
  const emf = () => server.logs.filter((l) => '_aws' in l) as unknown as Record<string, number | { CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string }[] }[] }>[];
  const sum = (name: string) => emf().reduce((n, l) => n + (l[name] as number), 0);
  await eventually(() => sum('ingest_events_accepted_total') === 3 && sum('s3_events_stored_total') === 3);
  const [line] = emf();
  const [directive] = (line!._aws as { CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string }[] }[] }).CloudWatchMetrics;
  t.equal(directive!.Namespace, 'EventIngest');
  t.same(directive!.Dimensions, [['Service']]);
  t.equal(line!.Service, 'event-ingest');
  const exported = await server.exported();
  for (const { Name } of directive!.Metrics) {
    const source = EMF_METRICS.find((m) => m.name === Name)?.source ?? Name;
    t.ok(exported.has(source), `${Name} is (a share of) a metric of the server: ${source}`);
    t.type(line![Name], 'number', `${Name} has a value`);
  }
  t.same(directive!.Metrics.map((m) => m.Name), EMF_METRICS.map((m) => m.name));
  t.equal(line!.wal_max_bytes, 67108864, 'the WAL\'s limit, for the WalNearlyFull alarm');
  t.type(line!.wal_bytes_current, 'number');
  const exit = await server.stop();
  t.equal(exit.code, 0);
});

t.test('without METRICS_EMF, no EMF lines', async (t) => {
  const s3 = await startS3(t);
  const server = await startServer(t, { ...s3.env });
  await server.post('{"a":1}');
  await server.stop();
  t.notOk(server.logs.some((l) => '_aws' in l));
});

t.test('the event-loop lag is measured by the EMF lines themselves, with no /metrics scrape', async (t) => {
  const s3 = await startS3(t);
  const server = await startServer(t, { ...s3.env, METRICS_EMF: 'true', METRICS_EMF_INTERVAL_MS: '1000' });
  // Never read /metrics here: prom-client's own gauge would stay 0 without a scrape.
  await eventually(() => server.logs.filter((l) => '_aws' in l).length >= 2);
  const lags = server.logs.filter((l) => '_aws' in l).map((l) => l.nodejs_eventloop_lag_p99_seconds as number);
  t.ok(lags.every((lag) => lag > 0 && lag < 5), `a real p99 in seconds in every line: ${lags.join(', ')}`);
  await server.stop();
});

t.test('the AccessDenied share, for the alarm that needs it alone', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  proxy.decide = () => ({ status: 403, code: 'AccessDenied' });
  const dlq = tempDir(t, 'dlq');
  const server = await startServer(t, { ...s3Env(proxy.endpoint), DLQ_DIR: dlq, METRICS_EMF: 'true', METRICS_EMF_INTERVAL_MS: '1000', BATCH_MAX_AGE_MS: '100' });
  t.equal((await server.post('{"a":1}')).status, 202);
  const emf = () => server.logs.filter((l) => '_aws' in l) as unknown as Record<string, number>[];
  const sum = (name: string) => emf().reduce((n, l) => n + l[name]!, 0);
  await eventually(() => sum('s3_put_errors_access_denied_total') >= 1);
  t.equal(sum('s3_put_errors_access_denied_total'), sum('s3_put_errors_total'), 'every error was an AccessDenied');
  t.ok(emf().some((l) => l.s3_put_failing_seconds! > 0), 'S3 failing shows');
});
