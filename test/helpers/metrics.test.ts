// The metric reader the tests rely on: an undeclared metric throws instead of reading 0.
import t from 'tap';
import { serverCounters } from '../harness/zero-loss.js';
import { metricValue } from './server.js';

const PAGE = [
  '# HELP s3_put_errors_total x',
  '# TYPE s3_put_errors_total counter',
  's3_put_errors_total{code="SlowDown"} 3',
  '# TYPE s3_put_duration_seconds histogram',
  's3_put_duration_seconds_count{result="ok"} 7',
  '',
].join('\n');

t.test('reads a sample; a declared series not yet exported reads 0', async (t) => {
  t.equal(metricValue(PAGE, 's3_put_errors_total', '{code="SlowDown"}'), 3);
  t.equal(metricValue(PAGE, 's3_put_errors_total', '{code="AccessDenied"}'), 0);
  t.equal(metricValue(PAGE, 's3_put_duration_seconds_count', '{result="ok"}'), 7);
});

t.test('a metric the page does not declare throws, naming it', async (t) => {
  t.throws(() => metricValue(PAGE, 's3_put_error_total'), /exports no metric named s3_put_error_total/);
  t.throws(() => serverCounters(PAGE), /exports no metric named ingest_events_accepted_total/);
});
