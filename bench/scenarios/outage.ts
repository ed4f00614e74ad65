// Scenario 7: a 10 s S3 outage (--seconds) in the middle of a run three times as long, then
// recovery; the zero-loss harness checks every acknowledged event is in S3 exactly once.
// Its client records ids, not times, so latency comes from a probe beside it (events without an
// `id`, which the audit leaves aside), and the table's latency cells stay empty.
import { S3Client } from '@aws-sdk/client-s3';
import { AckingClient, audit } from '../../test/harness/zero-loss.js';
import { startFaultProxy } from '../../test/helpers/fault-proxy.js';
import { type Figures, storage } from '../lib/measure.js';
import { describe, startProbe } from '../lib/probe.js';
import { eventFields } from '../lib/event.js';
import type { Scenario } from '../lib/scenario.js';
import { settle, startServer, storedBytes } from '../lib/stack.js';

export const scenario: Scenario = {
  id: 'outage',
  title: '7. a 10 s S3 outage mid-run, then recovery, with the zero-loss check',
  async run(ctx) {
    const teardowns: (() => unknown)[] = [];
    const proxy = await startFaultProxy({ teardown: (fn) => teardowns.push(fn) }, ctx.s3);
    let down = false;
    proxy.decide = () => (down ? { status: 503, code: 'SlowDown' } : 'pass');
    const prefix = `outage-${Date.now()}`;
    const s3Before = storedBytes(ctx.s3.dir);
    const server = await startServer(proxy.endpoint, { ...ctx.serverEnv, S3_PREFIX: prefix });
    const s3 = new S3Client({ endpoint: ctx.s3.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
    try {
      const client = new AckingClient({ url: server.url, concurrency: 32, eventsPerRequest: 50, maxRequests: 10_000_000, fields: (n) => eventFields(n) });
      const cpu = server.proc.cpuSeconds();
      const started = performance.now();
      const running = client.run();
      const probe = startProbe(server.url);
      await sleep(ctx.seconds * 1000);
      down = true;
      await sleep(ctx.seconds * 1000);
      down = false;
      await sleep(ctx.seconds * 1000);
      client.stop();
      await running;
      const probed = await probe.stop();
      const seconds = (performance.now() - started) / 1000;
      const cpuSeconds = server.proc.cpuSeconds() - cpu;
      const settled = await settle(server, 300);
      const final = settled.counters;
      const report = await audit(client, { client: s3, bucket: 'bench', prefix });
      // Outcomes are '202', '503 queue_full', ... or an error name (timeout, ECONNREFUSED).
      const outcomes = [...client.outcomes];
      const figures: Figures = {
        rps: client.acked.size / 50 / seconds,
        eventsPerSec: client.acked.size / seconds,
        cpuSecondsPerMillionEvents: (cpuSeconds / Math.max(client.acked.size, 1)) * 1e6,
        peakRssMiB: server.proc.peakRssBytes() / 1048576,
        ...storage(storedBytes(ctx.s3.dir) - s3Before, settled),
        non2xx: outcomes.filter(([o]) => /^[13-9]\d\d/.test(o)).reduce((n, [, count]) => n + count, 0),
        share503: outcomes.filter(([o]) => o.startsWith('503')).reduce((n, [, count]) => n + count, 0) / Math.max(client.requests, 1),
        errors: outcomes.filter(([o]) => !/^\d\d\d/.test(o)).reduce((n, [, count]) => n + count, 0),
      };
      const lossless = report.missing.length === 0 && report.duplicated.length === 0 && report.unexpected.length === 0;
      return {
        id: this.id,
        title: this.title,
        server: { ...figures, acceptedP50Ms: probed.p50, acceptedP99Ms: probed.p99, acked: report.acked, inS3: report.inS3, missing: report.missing.length, duplicated: report.duplicated.length, unexpected: report.unexpected.length, spilledToDlq: final.spilled, reuploaded: final.reuploaded },
        settled: { accepted: final.accepted, stored: final.stored, spilled: final.spilled, dropped: final.dropped, lossless },
        notes: [
          `${report.acked} events acknowledged, ${report.inS3} in S3 after recovery; ${final.spilled} went through the DLQ`,
          "the load here is the harness client (it records every id), not wrk: its rate is the client's, not the server's limit, and it times nothing",
          `accepted requests (probe, one at a time beside it): ${describe(probed)}`,
        ],
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
