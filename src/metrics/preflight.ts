// The S3 preflight's result, read at scrape time.
import { Gauge, type Registry } from 'prom-client';

export function observePreflight(registry: Registry, ok: () => boolean): void {
  new Gauge({
    name: 's3_preflight_ok',
    help: '1 once the start-up S3 preflight PUT succeeded; 0 while it has not (failed, or still running)',
    registers: [registry],
    collect() {
      this.set(ok() ? 1 : 0);
    },
  });
}
