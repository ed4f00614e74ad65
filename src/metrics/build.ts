// Which build a process runs, as a constant 1 labelled with the versions (the build_info idiom):
// joins on it show a fleet's versions during a deploy.
import { Gauge, type Registry } from 'prom-client';

export function observeBuild(registry: Registry, version: string): void {
  new Gauge({ name: 'ingest_build_info', help: 'Always 1; labels: the server version and the Node.js version', labelNames: ['version', 'node'], registers: [registry] }).set(
    { version, node: process.version },
    1,
  );
}
