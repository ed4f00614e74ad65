// Generates deploy/grafana/dashboard.json: node deploy/grafana/generate.mjs > deploy/grafana/dashboard.json
const panels = [
  ['Ingest: requests by status /s', 'sum by (status) (rate(http_requests_total[1m]))', 'reqps'],
  ['Ingest: events accepted /s', 'sum(rate(ingest_events_accepted_total[1m]))', 'short'],
  ['Back-pressure: 503 queue_full and 413 /s', 'sum(rate(http_requests_rejected_queue_full_total[1m]))|sum(rate(http_requests_rejected_body_too_large_total[1m]))', 'reqps'],
  ['Event channel depth (events)', 'sum by (instance) (channel_events)', 'short'],
  ['Upload queue: waiting and in flight', 'sum(upload_queue_batches)|sum(upload_inflight_batches)', 'short'],
  ['S3: events stored /s (live and from the DLQ)', 'sum(rate(s3_events_stored_total[1m]))|sum(rate(dlq_events_reuploaded_total[1m]))', 'short'],
  ['S3: PutObject p50 / p99 latency', 'histogram_quantile(0.5, sum by (le) (rate(s3_put_duration_seconds_bucket[5m])))|histogram_quantile(0.99, sum by (le) (rate(s3_put_duration_seconds_bucket[5m])))', 's'],
  ['S3: PutObject errors by code /s', 'sum by (code) (rate(s3_put_errors_total[1m]))', 'short'],
  ['DLQ: files', 'sum by (instance) (dlq_files_current)', 'short'],
  ['DLQ: bytes', 'sum by (instance) (dlq_bytes_current)', 'bytes'],
  ['DLQ: oldest file age', 'max by (instance) (dlq_oldest_age_seconds)', 's'],
  ['DLQ: spilled and re-uploaded events /s', 'sum(rate(dlq_events_spilled_total[1m]))|sum(rate(dlq_events_reuploaded_total[1m]))', 'short'],
  ['DLQ: events lost, by reason', 'sum by (reason) (increase(dlq_events_dropped_total[5m]))', 'short'],
  ['Event-loop delay p99', 'max by (instance) (nodejs_eventloop_lag_p99_seconds)', 's'],
  ['CPU (cores)', 'sum by (instance) (rate(process_cpu_seconds_total[1m]))', 'short'],
  ['Memory (RSS)', 'sum by (instance) (process_resident_memory_bytes)', 'bytes'],
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
  panels: panels.map(([title, exprs, unit], i) => ({
    id: i + 1,
    title,
    type: 'timeseries',
    datasource: { type: 'prometheus', uid: '${datasource}' },
    gridPos: { h: 8, w: 12, x: (i % 2) * 12, y: Math.floor(i / 2) * 8 },
    fieldConfig: { defaults: { unit }, overrides: [] },
    targets: exprs.split('|').map((expr, j) => ({ refId: String.fromCharCode(65 + j), expr, datasource: { type: 'prometheus', uid: '${datasource}' } })),
  })),
};
process.stdout.write(`${JSON.stringify(dashboard, null, 2)}\n`);
