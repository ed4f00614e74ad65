// The Idempotency-Key metrics, read from a real table at each scrape: keys held, replays,
// conflicts by reason and evictions, each caught up once and not counted twice.
import { Registry } from 'prom-client';
import t from 'tap';
import { IdempotencyTable } from '../../src/idempotency.js';
import { observeIdempotency } from '../../src/metrics/idempotency.js';
import { metricValue } from '../helpers/server.js';

t.test('keys held, replays, conflicts by reason and evictions, from the table at each scrape', async (t) => {
  const registry = new Registry();
  const table = new IdempotencyTable(60_000, 2, () => 1000);
  observeIdempotency(registry, table);
  let page = await registry.metrics();
  for (const name of ['idempotency_keys', 'idempotency_replays_total', 'idempotency_keys_evicted_total']) t.equal(metricValue(page, name), 0, `${name} at 0`);
  const key = (k: string, hash = 1) => ({ key: k, hash, bytes: 10 });
  const a = table.begin(key('a'), 1000);
  if (typeof a === 'string') throw new Error(a);
  table.begin(key('a'), 1000); // in_progress
  table.settle(a, 'accepted');
  table.begin(key('a'), 1000); // replayed
  table.begin(key('a'), 1000); // replayed
  table.begin(key('a', 2), 1000); // key_reused
  table.begin(key('b'), 1000);
  table.begin(key('c'), 1000); // evicts a
  page = await registry.metrics();
  t.equal(metricValue(page, 'idempotency_keys'), 2);
  t.equal(metricValue(page, 'idempotency_replays_total'), 2);
  t.equal(metricValue(page, 'idempotency_conflicts_total', '{reason="in_progress"}'), 1);
  t.equal(metricValue(page, 'idempotency_conflicts_total', '{reason="body_differs"}'), 1);
  t.equal(metricValue(page, 'idempotency_keys_evicted_total'), 1);
  page = await registry.metrics();
  t.equal(metricValue(page, 'idempotency_replays_total'), 2, 'a second scrape counts nothing twice');
});
