// The write-ahead log's metrics: histograms and counters at 0 from the start, the limit as a
// gauge set once, and the log's size read from its state at each scrape.
import { Registry } from 'prom-client';
import t from 'tap';
import { createWalMetrics, observeWal, type WalState } from '../../src/metrics/wal.js';

t.test('every counter at 0 and every histogram empty before anything happens', async (t) => {
  const registry = new Registry();
  createWalMetrics(registry);
  const metrics = await registry.getMetricsAsJSON();
  t.strictSame(
    metrics.map((m) => [m.name, m.type]),
    [
      ['wal_fsync_seconds', 'histogram'],
      ['wal_group_size', 'histogram'],
      ['wal_replayed_events_total', 'counter'],
      ['wal_segments_quarantined_total', 'counter'],
      ['wal_torn_tails_total', 'counter'],
      ['wal_lost_events_total', 'counter'],
      ['wal_records_corrupt_total', 'counter'],
      ['wal_bytes_skipped_total', 'counter'],
      ['wal_write_failures_total', 'counter'],
      ['wal_adopted_dirs_total', 'counter'],
    ],
  );
  const text = await registry.metrics();
  for (const m of metrics.filter((m) => String(m.type) === 'counter')) t.match(text, `\n${m.name} 0\n`, `${m.name} at 0`);
  t.match(text, 'wal_fsync_seconds_count 0\n');
  t.match(text, 'wal_group_size_count 0\n');
});

t.test('the histograms\' buckets: fsyncs from 100 µs to 1 s, groups from 1 to 1024 requests', async (t) => {
  const registry = new Registry();
  const metrics = createWalMetrics(registry);
  metrics.fsyncSeconds.observe(0.0003);
  metrics.groupSize.observe(3);
  const text = await registry.metrics();
  t.match(text, 'wal_fsync_seconds_bucket{le="0.0001"} 0\n');
  t.match(text, 'wal_fsync_seconds_bucket{le="0.0005"} 1\n');
  t.match(text, 'wal_fsync_seconds_bucket{le="1"} 1\n');
  t.match(text, 'wal_group_size_bucket{le="2"} 0\n');
  t.match(text, 'wal_group_size_bucket{le="4"} 1\n');
  t.match(text, 'wal_group_size_bucket{le="1024"} 1\n');
});

t.test('observeWal: the size and segments read at scrape time, the limit as given', async (t) => {
  const registry = new Registry();
  const state: { -readonly [K in keyof WalState]: WalState[K] } = { bytes: 0, segments: 1 };
  observeWal(registry, state, 64 * 1024 * 1024);
  const values = async () => Object.fromEntries((await registry.getMetricsAsJSON()).map((m) => [m.name, m.values[0]?.value]));
  t.strictSame(await values(), { wal_bytes_current: 0, wal_max_bytes: 67108864, wal_segments_current: 1 });
  state.bytes = 5000;
  state.segments = 2;
  t.strictSame(await values(), { wal_bytes_current: 5000, wal_max_bytes: 67108864, wal_segments_current: 2 });
  const help = (await registry.getMetricsAsJSON()).find((m) => m.name === 'wal_max_bytes')!.help;
  t.match(help, /WAL_MAX_BYTES: past it the write-ahead log refuses every request \(503 queue_full\)/, 'the alert\'s denominator says what passing it means');
});
