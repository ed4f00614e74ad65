// Generates deploy/grafana/dashboard.json: node deploy/grafana/generate.mjs > deploy/grafana/dashboard.json
// [title, queries, unit]; each query is [expr, legend]. Windows are $__rate_interval, which Grafana
// keeps at four scrape intervals or more, so rate() has samples at any scrape interval.
const R = '$__rate_interval';
const panels = [
  ['Ingest: requests by status /s', [[`sum by (status) (rate(http_requests_total[${R}]))`, '{{status}}']], 'reqps'],
  ['Ingest: events accepted /s', [[`sum(rate(ingest_events_accepted_total[${R}]))`, 'accepted']], 'short'],
  ['Back-pressure: 503 queue_full and 413 /s', [[`sum(rate(http_requests_rejected_queue_full_total[${R}]))`, '503 queue_full'], [`sum(rate(http_requests_rejected_body_too_large_total[${R}]))`, '413 body_too_large']], 'reqps'],
  ['Event channel depth (events)', [['sum by (instance) (channel_events)', '{{instance}}']], 'short'],
  ['Upload queue: waiting and in flight', [['sum(upload_queue_batches)', 'waiting'], ['sum(upload_inflight_batches)', 'in flight']], 'short'],
  ['S3: events stored /s (live and from the DLQ)', [[`sum(rate(s3_events_stored_total[${R}]))`, 'live'], [`sum(rate(dlq_events_reuploaded_total[${R}]))`, 'from the DLQ']], 'short'],
  // By result: an outage's failed attempts are fast and would pass for healthy latency if mixed in.
  ['S3: PutObject p50 / p99 latency, by result', [[`histogram_quantile(0.5, sum by (le, result) (rate(s3_put_duration_seconds_bucket[${R}])))`, 'p50 {{result}}'], [`histogram_quantile(0.99, sum by (le, result) (rate(s3_put_duration_seconds_bucket[${R}])))`, 'p99 {{result}}']], 's'],
  // The total is a line at 0 when all is well (every code is exported from start-up); codes show when they occur.
  ['S3: PutObject errors by code /s', [[`sum(rate(s3_put_errors_total[${R}]))`, 'all codes'], [`sum by (code) (rate(s3_put_errors_total[${R}])) > 0`, '{{code}}']], 'short'],
  ['S3: seconds failing (0 while S3 takes PUTs)', [['max by (instance) (s3_put_failing_seconds)', '{{instance}}']], 's'],
  ['DLQ: files', [['sum by (instance) (dlq_files_current)', '{{instance}}']], 'short'],
  ['DLQ: bytes', [['sum by (instance) (dlq_bytes_current)', '{{instance}}']], 'bytes'],
  ['DLQ: oldest file age', [['max by (instance) (dlq_oldest_age_seconds)', '{{instance}}']], 's'],
  ['DLQ: spilled and re-uploaded events /s', [[`sum(rate(dlq_events_spilled_total[${R}]))`, 'spilled'], [`sum(rate(dlq_events_reuploaded_total[${R}]))`, 're-uploaded']], 'short'],
  ['DLQ: events lost, by reason', [[`sum by (reason) (increase(dlq_events_dropped_total[${R}]))`, '{{reason}}']], 'short'],
  ['Event-loop delay p99', [['max by (instance) (nodejs_eventloop_lag_p99_seconds)', '{{instance}}']], 's'],
  ['CPU (cores)', [[`sum by (instance) (rate(process_cpu_seconds_total[${R}]))`, '{{instance}}']], 'short'],
  ['Memory (RSS)', [['sum by (instance) (process_resident_memory_bytes)', '{{instance}}']], 'bytes'],
];
const dashboard = {
  title: 'Event ingest',
  uid: 'event-ingest',
  tags: ['ingest', 's3'],
  timezone: 'utc',
  schemaVersion: 39,
  refresh: '30s',
  time: { from: 'now-6h', to: 'now' },
  templating: { list: [{ name: 'datasource', type: 'datasource', query: 'prometheus', current: {} }] },
  panels: panels.map(([title, queries, unit], i) => ({
    id: i + 1,
    title,
    type: 'timeseries',
    datasource: { type: 'prometheus', uid: '${datasource}' },
    gridPos: { h: 8, w: 12, x: (i % 2) * 12, y: Math.floor(i / 2) * 8 },
    fieldConfig: { defaults: { unit }, overrides: [] },
    targets: queries.map(([expr, legendFormat], j) => ({ refId: String.fromCharCode(65 + j), expr, legendFormat, datasource: { type: 'prometheus', uid: '${datasource}' } })),
  })),
};
process.stdout.write(`${JSON.stringify(dashboard, null, 2)}\n`);
