// The DLQ's metrics: counters whose every labelled series exists at 0 from the start (so
// increase() and dashboards see a zero, not nothing), and gauges read from the DLQ's state at each
// scrape, the oldest file's age by the clock given.
import { Registry } from 'prom-client';
import t from 'tap';
import { createDlqMetrics, DROP_REASONS, type DlqState, observeDlq } from '../../src/metrics/dlq.js';

/** name{labels} -> value, as /metrics would show them. */
async function scrape(registry: Registry): Promise<Map<string, number>> {
  const values = new Map<string, number>();
  for (const metric of await registry.getMetricsAsJSON()) {
    for (const v of metric.values) {
      const labels = Object.entries(v.labels).map(([k, l]) => `${k}=${String(l)}`).join(',');
      values.set(labels === '' ? metric.name : `${metric.name}{${labels}}`, v.value);
    }
  }
  return values;
}

t.test('every counter and every reason\'s series exists at 0 before anything happens', async (t) => {
  const registry = new Registry();
  createDlqMetrics(registry);
  const values = await scrape(registry);
  t.strictSame(
    Object.fromEntries([...values].filter(([name]) => name.includes('{'))),
    {
      'dlq_events_dropped_total{reason=capacity}': 0,
      'dlq_events_dropped_total{reason=ttl}': 0,
      'dlq_events_dropped_total{reason=write_failed}': 0,
      'dlq_events_dropped_total{reason=quarantined}': 0,
      'dlq_files_rejected_total{reason=not_regular}': 0,
      'dlq_files_rejected_total{reason=unreadable}': 0,
      'dlq_files_rejected_total{reason=bad_key}': 0,
      'dlq_files_rejected_total{reason=too_large}': 0,
    },
    'the labelled counters, one series per reason',
  );
  const text = await registry.metrics();
  for (const name of ['dlq_events_spilled_total', 'dlq_events_reuploaded_total', 'dlq_events_taken_total', 'dlq_files_expired_total', 'dlq_files_corrupt_total', 'dlq_write_failures_total']) {
    t.match(text, `# TYPE ${name} counter\n${name} 0\n`, `${name} at 0`);
  }
  t.strictSame([...DROP_REASONS], ['capacity', 'ttl', 'write_failed', 'quarantined']);
});

t.test('the counters count what they are given, by reason', async (t) => {
  const registry = new Registry();
  const metrics = createDlqMetrics(registry);
  metrics.eventsDropped.inc({ reason: 'ttl' }, 5);
  metrics.filesRejected.inc({ reason: 'bad_key' });
  metrics.eventsSpilled.inc(7);
  const values = await scrape(registry);
  t.equal(values.get('dlq_events_dropped_total{reason=ttl}'), 5);
  t.equal(values.get('dlq_events_dropped_total{reason=capacity}'), 0);
  t.equal(values.get('dlq_files_rejected_total{reason=bad_key}'), 1);
  t.equal(values.get('dlq_events_spilled_total'), 7);
});

t.test('the help says what each reason means, for whoever reads /metrics during an incident', async (t) => {
  const registry = new Registry();
  createDlqMetrics(registry);
  const help = new Map((await registry.getMetricsAsJSON()).map((m) => [m.name, m.help]));
  for (const reason of DROP_REASONS) t.match(help.get('dlq_events_dropped_total'), reason);
  for (const reason of ['not_regular', 'unreadable', 'bad_key', 'too_large']) t.match(help.get('dlq_files_rejected_total'), reason);
  t.match(help.get('dlq_files_expired_total'), 'DLQ_TTL_SECONDS');
});

t.test('the gauges are the DLQ\'s state at each scrape; the oldest age by the clock given, 0 when empty', async (t) => {
  const registry = new Registry();
  const state: { -readonly [K in keyof DlqState]: DlqState[K] } = { files: 0, bytes: 0, events: 0, oldestSpilledAt: undefined, full: false };
  let now = 1_000_000;
  observeDlq(registry, state, () => now);
  t.match(Object.fromEntries(await scrape(registry)), { dlq_files_current: 0, dlq_bytes_current: 0, dlq_events_current: 0, dlq_oldest_age_seconds: 0 });
  Object.assign(state, { files: 3, bytes: 4096, events: 120, oldestSpilledAt: now - 90_500 });
  t.match(Object.fromEntries(await scrape(registry)), { dlq_files_current: 3, dlq_bytes_current: 4096, dlq_events_current: 120, dlq_oldest_age_seconds: 90.5 });
  now += 10_000;
  t.equal((await scrape(registry)).get('dlq_oldest_age_seconds'), 100.5, 'the age grows with the clock');
  state.oldestSpilledAt = now + 5000;
  t.equal((await scrape(registry)).get('dlq_oldest_age_seconds'), 0, 'a file from the future (clock stepped back) is age 0, never negative');
});
