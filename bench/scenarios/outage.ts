// Scenario 7: a 10 s S3 outage (--seconds) in the middle of a run three times as long, then
// recovery; the zero-loss harness checks every acknowledged event is in S3 exactly once.
import { S3Client } from '@aws-sdk/client-s3';
import { AckingClient, audit } from '../../test/harness/zero-loss.js';
import { startFaultProxy } from '../../test/helpers/fault-proxy.js';
import { summarise } from '../lib/measure.js';
import type { Scenario } from '../lib/scenario.js';
import { settle, startServer } from '../lib/stack.js';

export const scenario: Scenario = {
  id: 'outage',
  title: '7. a 10 s S3 outage mid-run, then recovery, with the zero-loss check',
  async run(ctx) {
    const teardowns: (() => unknown)[] = [];
    const proxy = await startFaultProxy({ teardown: (fn) => teardowns.push(fn) }, ctx.s3);
    let down = false;
    proxy.decide = () => (down ? { status: 503, code: 'SlowDown' } : 'pass');
    const prefix = `outage-${Date.now()}`;
    const server = await startServer(proxy.endpoint, { ...ctx.serverEnv, S3_PREFIX: prefix });
    const s3 = new S3Client({ endpoint: ctx.s3.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
    try {
      const client = new AckingClient({ url: server.url, concurrency: 32, eventsPerRequest: 50, maxRequests: 10_000_000, padBytes: 200 });
      const cpu = server.proc.cpuSeconds();
      const started = performance.now();
      const running = client.run();
      await sleep(ctx.seconds * 1000);
      down = true;
      await sleep(ctx.seconds * 1000);
      down = false;
      await sleep(ctx.seconds * 1000);
      client.stop();
      await running;
      const seconds = (performance.now() - started) / 1000;
      const final = (await settle(server, 300)).counters;
      const report = await audit(client, { client: s3, bucket: 'bench', prefix });
      const figures = summarise(
        [{ load: { seconds, requests: client.requests, ok: client.acked.size / 50, non2xx: 0, errors: 0, latency: { p50: 0, p99: 0, p999: 0 } }, cpuSeconds: server.proc.cpuSeconds() - cpu }],
        50,
        server.proc.peakRssBytes(),
      );
      const lossless = report.missing.length === 0 && report.duplicated.length === 0 && report.unexpected.length === 0;
      return {
        id: this.id,
        title: this.title,
        server: { ...figures, acked: report.acked, inS3: report.inS3, missing: report.missing.length, duplicated: report.duplicated.length, unexpected: report.unexpected.length, spilledToDlq: final.spilled, reuploaded: final.reuploaded },
        settled: { accepted: final.accepted, stored: final.stored, spilled: final.spilled, dropped: final.dropped, lossless },
        notes: [`${report.acked} events acknowledged, ${report.inS3} in S3 after recovery; ${final.spilled} went through the DLQ`, 'the load here is the harness client (it records every id), not wrk: its rate is the client\'s, not the server\'s limit'],
      };
    } finally {
      s3.destroy();
      await server.proc.stop();
      for (const fn of teardowns) await fn();
    }
  },
};

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
