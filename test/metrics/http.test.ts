// The HTTP front's metrics: each the sum of the main thread's counts and every worker thread's,
// counters caught up at each scrape (never counting a bump twice), gauges read as they are.
import { Registry } from 'prom-client';
import t from 'tap';
import { createHttpMetrics, SHARED_COUNTS_BYTES, sharedHttpCounts } from '../../src/metrics/http.js';

/** name{labels} -> value, from what /metrics would show. */
async function scrape(registry: Registry): Promise<Map<string, number>> {
  const values = new Map<string, number>();
  for (const metric of await registry.getMetricsAsJSON()) {
    for (const v of metric.values) {
      const labels = Object.entries(v.labels)
        .map(([k, l]) => `${k}=${String(l)}`)
        .join(',');
      values.set(labels === '' ? metric.name : `${metric.name}{${labels}}`, v.value);
    }
  }
  return values;
}

t.test('sums over the main thread and the workers, at every scrape', async (t) => {
  const registry = new Registry();
  const workers = [sharedHttpCounts(new SharedArrayBuffer(SHARED_COUNTS_BYTES)), sharedHttpCounts(new SharedArrayBuffer(SHARED_COUNTS_BYTES))];
  const main = createHttpMetrics(registry, workers);
  const all = [main, ...workers];
  all.forEach((c, i) => {
    c.requests['202'] += 10 * (i + 1);
    c.requests['503'] += i;
    c.rejectedQueueFull += i;
    c.rejectedBodyTooLarge += 1;
    c.rejectedBusy += 2;
    c.rejectedDlqFull += 4;
    c.ackTimeouts += 1;
    c.eventsAccepted += 100 * (i + 1);
    c.bodiesInFlightBytes = 1000 * (i + 1);
    c.connectionsOpen = 5;
    c.connectionsRefused += 3;
    c.rejectedAwaitingAnswers += 4;
    c.requestsWithdrawn += i;
    c.bodiesAwaitingBytes = 10 * (i + 1);
    c.answersLostClientGone += 1;
  });
  main.answersLostWorkerCrashed += 5;
  const first = await scrape(registry);
  t.same(
    [...first.keys()].filter((name) => !name.startsWith('http_requests_total')),
    [
      'http_answers_lost_total{reason=client_gone}',
      'http_answers_lost_total{reason=worker_crashed}',
      'http_requests_rejected_queue_full_total',
      'http_requests_rejected_body_too_large_total',
      'http_requests_rejected_busy_total',
      'http_requests_rejected_dlq_full_total',
      'http_requests_ack_timeout_total',
      'http_requests_rejected_awaiting_answers_total',
      'http_requests_withdrawn_total',
      'http_bodies_awaiting_answer_bytes',
      'http_bodies_in_flight_bytes',
      'http_connections_open',
      'http_connections_refused_total',
      'ingest_events_accepted_total',
      'http_engine_info{engine=native}',
    ],
    'every metric, in /metrics order',
  );
  t.equal(first.get('http_requests_total{status=202}'), 60);
  t.equal(first.get('http_requests_total{status=503}'), 3);
  t.equal(first.get('http_requests_total{status=400}'), 0);
  t.equal(first.get('http_requests_rejected_queue_full_total'), 3);
  t.equal(first.get('http_requests_rejected_body_too_large_total'), 3);
  t.equal(first.get('http_requests_rejected_busy_total'), 6);
  t.equal(first.get('http_requests_rejected_dlq_full_total'), 12);
  t.equal(first.get('http_requests_ack_timeout_total'), 3);
  t.equal(first.get('ingest_events_accepted_total'), 600);
  t.equal(first.get('http_bodies_in_flight_bytes'), 6000);
  t.equal(first.get('http_connections_open'), 15);
  t.equal(first.get('http_connections_refused_total'), 9);
  t.equal(first.get('http_engine_info{engine=native}'), 1);
  t.equal(first.get('http_requests_rejected_awaiting_answers_total'), 12);
  t.equal(first.get('http_requests_withdrawn_total'), 3);
  t.equal(first.get('http_bodies_awaiting_answer_bytes'), 60);
  t.equal(first.get('http_answers_lost_total{reason=client_gone}'), 3);
  t.equal(first.get('http_answers_lost_total{reason=worker_crashed}'), 5);

  workers[1]!.requests['202'] += 7;
  workers[1]!.eventsAccepted += 70;
  main.connectionsOpen = 0;
  const second = await scrape(registry);
  t.equal(second.get('http_requests_total{status=202}'), 67, 'a counter goes up by what was bumped since');
  t.equal(second.get('ingest_events_accepted_total'), 670);
  t.equal(second.get('http_requests_rejected_busy_total'), 6, 'and stays put when nothing was');
  t.equal(second.get('http_answers_lost_total{reason=worker_crashed}'), 5, 'by reason, too');
  t.equal(second.get('http_connections_open'), 10, 'a gauge is what the counts say now');
});

t.test('no workers: the main thread alone; the engine, native, in its label', async (t) => {
  const registry = new Registry();
  const main = createHttpMetrics(registry);
  main.requests['400'] += 2;
  const values = await scrape(registry);
  t.equal(values.get('http_requests_total{status=400}'), 2);
  t.equal(values.get('http_engine_info{engine=native}'), 1);
});
