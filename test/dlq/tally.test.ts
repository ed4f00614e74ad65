// The DLQ's tally of lost events: per reason in a plain per-process count (the shutdown summary)
// and in dlq_events_dropped_total of a real prom-client registry, always the same numbers.
import { Registry } from 'prom-client';
import t from 'tap';
import { DropTally } from '../../src/dlq/tally.js';
import { createDlqMetrics, DROP_REASONS } from '../../src/metrics/dlq.js';

async function dropped(registry: Registry): Promise<Record<string, number>> {
  const metric = await registry.getSingleMetric('dlq_events_dropped_total')!.get();
  return Object.fromEntries(metric.values.map((v) => [v.labels.reason, v.value]));
}

t.test('a new tally holds zero for every drop reason', async (t) => {
  const tally = new DropTally(createDlqMetrics(new Registry()));
  t.equal(tally.total, 0);
  t.same(tally.byReason(), Object.fromEntries(DROP_REASONS.map((r) => [r, 0])));
});

t.test('add counts events by reason in the tally and in the metric alike; total sums the reasons', async (t) => {
  const registry = new Registry();
  const tally = new DropTally(createDlqMetrics(registry));
  tally.add('capacity', 3);
  tally.add('ttl', 7);
  tally.add('capacity', 2);
  tally.add('quarantined', 0);
  t.same(tally.byReason(), { capacity: 5, ttl: 7, write_failed: 0, quarantined: 0 });
  t.equal(tally.total, 12);
  t.same(await dropped(registry), tally.byReason());
});

t.test('byReason is a copy: changing it changes neither the tally nor its total', async (t) => {
  const tally = new DropTally(createDlqMetrics(new Registry()));
  tally.add('write_failed', 4);
  const seen = tally.byReason() as Record<string, number>;
  seen.write_failed = 1000;
  t.equal(tally.byReason().write_failed, 4);
  t.equal(tally.total, 4);
});

t.test('two tallies on one registry each count their own; the metric counts both', async (t) => {
  // As a server's store and an adopted DLQ's store share the metrics but not the shutdown summary.
  const registry = new Registry();
  const metrics = createDlqMetrics(registry);
  const mine = new DropTally(metrics);
  const adopted = new DropTally(metrics);
  mine.add('ttl', 2);
  adopted.add('ttl', 5);
  t.equal(mine.total, 2);
  t.equal(adopted.total, 5);
  t.equal((await dropped(registry)).ttl, 7);
});
