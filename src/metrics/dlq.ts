// Dead-letter queue metrics. Until the DLQ lands, a batch whose last upload attempt fails is lost
// and counted here, so the operators' "dropped > 0" alert already tells the truth.
import { Counter, type Registry } from 'prom-client';

export interface DlqMetrics {
  eventsDropped: Counter;
}

export function createDlqMetrics(registry: Registry): DlqMetrics {
  return {
    eventsDropped: new Counter({
      name: 'dlq_events_dropped_total',
      help: 'Accepted events that were lost: not stored in S3 and not kept in the DLQ',
      registers: [registry],
    }),
  };
}
