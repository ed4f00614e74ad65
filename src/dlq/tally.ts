// Events the DLQ lost, by reason: in the metric (over the registry's life) and in a plain
// per-process tally that the shutdown summary can report without reading the registry.
import { DROP_REASONS, type DlqMetrics, type DropReason } from '../metrics/dlq.js';

export class DropTally {
  readonly #events = Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>;

  constructor(private readonly metrics: DlqMetrics) {}

  add(reason: DropReason, events: number): void {
    this.#events[reason] += events;
    this.metrics.eventsDropped.inc({ reason }, events);
  }

  get total(): number {
    return Object.values(this.#events).reduce((a, b) => a + b, 0);
  }

  byReason(): Readonly<Record<DropReason, number>> {
    return { ...this.#events };
  }
}
