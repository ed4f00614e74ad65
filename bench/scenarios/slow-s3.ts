// Scenario 6: every S3 PUT answered 1 s late (a proxy in front of the S3 server): back-pressure
// from S3 through the upload queue and the channel to 503 queue_full, with memory bounded.
import { startFaultProxy } from '../../test/helpers/fault-proxy.js';
import { measure, storage, summarise } from '../lib/measure.js';
import { bodies } from '../lib/bodies.js';
import { lossless, type Scenario } from '../lib/scenario.js';
import { type Scrape, scrape, settle, startServer, storedBytes } from '../lib/stack.js';

export const scenario: Scenario = {
  id: 'slow-s3',
  title: '6. S3 slowed down: every PUT 1 s late',
  async run(ctx) {
    const teardowns: (() => unknown)[] = [];
    const proxy = await startFaultProxy({ teardown: (fn) => teardowns.push(fn) }, ctx.s3);
    proxy.decide = () => ({ delayMs: 1000 });
    const s3Before = storedBytes(ctx.s3.dir);
    const server = await startServer(proxy.endpoint, ctx.serverEnv);
    try {
      let during: Scrape | undefined;
      const afterLoad = async () => {
        during = await scrape(server);
      };
      const round = await measure(server, bodies('array'), ctx.seconds, ctx.connections, { s3Dir: ctx.s3.dir, afterLoad });
      const settled = await settle(server, 300);
      const final = settled.counters;
      const summary = summarise([round], bodies('array'), server.proc.peakRssBytes());
      const figures = { ...summary, ...storage(storedBytes(ctx.s3.dir) - s3Before, settled, summary.postedJsonBytes) };
      return {
        id: this.id,
        title: this.title,
        server: { ...figures, rate503: round.load.non2xx / Math.max(round.load.requests, 1), channelEventsAtEnd: during!.channelEvents },
        settled: lossless({ accepted: final.accepted, stored: final.stored, spilled: final.spilled, dropped: final.dropped }),
        notes: [`${round.load.non2xx} requests refused with 503 queue_full while S3 took at most UPLOAD_CONCURRENCY batches a second`],
      };
    } finally {
      await server.proc.stop();
      for (const fn of teardowns) await fn();
    }
  },
};
