// The upload path's metrics: s3_put_errors_total exports every code's series at 0 from the start
// and s3_put_duration_seconds both results, the batch size histograms step by 4, and the channel
// and upload queue depths and the S3 failing time are read at each scrape.
import { Registry } from 'prom-client';
import t from 'tap';
import { ERROR_CODES } from '../../src/metrics/s3-codes.js';
import { createUploadMetrics, observeQueueDepths, observeS3Failing } from '../../src/metrics/upload.js';

t.test('every code of s3_put_errors_total and both results of s3_put_duration_seconds exist at 0 from the start', async (t) => {
  const registry = new Registry();
  createUploadMetrics(registry);
  const errors = (await registry.getSingleMetric('s3_put_errors_total')!.get()).values;
  t.strictSame(errors.map((v) => v.labels.code), [...ERROR_CODES], 'one series per bounded code');
  t.ok(errors.every((v) => v.value === 0));
  const text = await registry.metrics();
  t.match(text, 's3_put_duration_seconds_count{result="ok"} 0\n');
  t.match(text, 's3_put_duration_seconds_count{result="error"} 0\n');
  for (const name of ['s3_events_stored_total', 's3_objects_stored_total', 's3_bytes_stored_total']) t.match(text, `# TYPE ${name} counter\n${name} 0\n`, name);
  for (const name of ['batch_events', 'batch_uncompressed_bytes', 'batch_compressed_bytes']) t.match(text, `# TYPE ${name} histogram\n`, name);
});

t.test('the batch histograms\' buckets grow by 4 over their ranges; PUT durations from 10 ms to 30 s', async (t) => {
  const registry = new Registry();
  const metrics = createUploadMetrics(registry);
  metrics.batchEvents.observe(5);
  metrics.batchBytes.observe(5000);
  metrics.batchCompressedBytes.observe(300);
  metrics.putSeconds.observe({ result: 'ok' }, 0.2);
  const json = await registry.getMetricsAsJSON();
  const bounds = (name: string) => json.find((m) => m.name === name)!.values.filter((v) => (v as { metricName?: string }).metricName === `${name}_bucket`).map((v) => v.labels.le);
  const powersOf4 = (from: number, to: number) => Array.from({ length: Math.log(to / from) / Math.log(4) + 1 }, (_, i) => from * 4 ** i);
  t.strictSame(bounds('batch_events'), [...powersOf4(1, 262144), '+Inf']);
  t.strictSame(bounds('batch_uncompressed_bytes'), [...powersOf4(1024, 268435456), '+Inf'], '1 KiB to 256 MiB');
  t.strictSame(bounds('batch_compressed_bytes'), [...powersOf4(256, 67108864), '+Inf'], '256 B to 64 MiB');
  t.strictSame(bounds('s3_put_duration_seconds').filter((_, i, all) => i < all.length / 2), [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, '+Inf']);
  const text = await registry.metrics();
  t.match(text, 'batch_events_bucket{le="4"} 0\nbatch_events_bucket{le="16"} 1\n');
  t.match(text, 'batch_uncompressed_bytes_bucket{le="4096"} 0\nbatch_uncompressed_bytes_bucket{le="16384"} 1\n');
  t.match(text, 'batch_compressed_bytes_bucket{le="256"} 0\nbatch_compressed_bytes_bucket{le="1024"} 1\n');
  t.match(text, 's3_put_duration_seconds_bucket{le="0.1",result="ok"} 0\ns3_put_duration_seconds_bucket{le="0.25",result="ok"} 1\n');
});

t.test('the queue depths are read from the pipeline at each scrape', async (t) => {
  const registry = new Registry();
  const depths = { channelEvents: 0, channelBytes: 0, uploadQueued: 0, uploadInFlight: 0 };
  observeQueueDepths(registry, {
    channelEvents: () => depths.channelEvents,
    channelBytes: () => depths.channelBytes,
    uploadQueued: () => depths.uploadQueued,
    uploadInFlight: () => depths.uploadInFlight,
  });
  const values = async () => Object.fromEntries((await registry.getMetricsAsJSON()).map((m) => [m.name, m.values[0]?.value]));
  t.strictSame(await values(), { channel_events: 0, channel_bytes: 0, upload_queue_batches: 0, upload_inflight_batches: 0 });
  Object.assign(depths, { channelEvents: 10, channelBytes: 2048, uploadQueued: 3, uploadInFlight: 4 });
  t.strictSame(await values(), { channel_events: 10, channel_bytes: 2048, upload_queue_batches: 3, upload_inflight_batches: 4 });
});

t.test('s3_put_failing_seconds is the uploader\'s answer at each scrape', async (t) => {
  const registry = new Registry();
  let failing = 0;
  observeS3Failing(registry, () => failing);
  const value = async () => (await registry.getSingleMetric('s3_put_failing_seconds')!.get()).values[0]!.value;
  t.equal(await value(), 0);
  failing = 42.5;
  t.equal(await value(), 42.5);
  failing = 0;
  t.equal(await value(), 0, 'back to 0 at the first success');
});
