// Scenario 5: offered load far above what one core can take, for 30 s (3 x --seconds): how many
// 503s, the latency accepted requests see, and peak memory against the bound the config implies.
import { type Config, loadConfig } from '../../src/config.js';
import { measure, storage, summarise } from '../lib/measure.js';
import { describe, type ProbeResult, startProbe } from '../lib/probe.js';
import { bodies } from '../lib/bodies.js';
import { lossless, type Scenario } from '../lib/scenario.js';
import { settle, startServer, storedBytes } from '../lib/stack.js';

const MiB = 1024 * 1024;

/** docs/tuning.md, "Memory": base + channel + (open + cut + queued + 2 x in flight) batches + two bodies + bodies being read. */
export function memoryBoundMiB(c: Config): number {
  return (240 * MiB + c.channelMaxBytes + (2 + c.uploadQueueMaxBatches + 2 * c.uploadConcurrency) * c.batchMaxBytes + 2 * c.maxBodyBytes + c.maxBodiesInFlightBytes) / MiB;
}

export const scenario: Scenario = {
  id: 'overload',
  title: '5. overload: 50-event arrays from 8x the connections, 30 s',
  async run(ctx) {
    const bound = memoryBoundMiB(loadConfig(ctx.serverEnv));
    const s3Before = storedBytes(ctx.s3.dir);
    const server = await startServer(ctx.s3.endpoint, ctx.serverEnv);
    try {
      const probe = startProbe(server.url);
      let probed: ProbeResult | undefined;
      const afterLoad = async () => {
        probed = await probe.stop();
      };
      const round = await measure(server, bodies('array'), ctx.seconds * 3, ctx.connections * 8, { s3Dir: ctx.s3.dir, afterLoad });
      const final = await settle(server);
      const summary = summarise([round], bodies('array'), server.proc.peakRssBytes());
      const figures = { ...summary, ...storage(storedBytes(ctx.s3.dir) - s3Before, final, summary.postedJsonBytes) };
      const requests = round.load.requests;
      return {
        id: this.id,
        title: this.title,
        server: {
          ...figures,
          rate503: round.load.non2xx / Math.max(requests, 1),
          acceptedP99Ms: probed!.p99,
          acceptedP50Ms: probed!.p50,
          probeRefusedWithRetryAfter: `${probed!.refusedWithRetryAfter}/${probed!.refused}`,
          memoryBoundMiB: bound,
        },
        settled: lossless({ accepted: final.counters.accepted, stored: final.counters.stored, spilled: final.counters.spilled, dropped: final.counters.dropped }),
        notes: [
          `peak RSS ${figures.peakRssMiB!.toFixed(0)} MiB against a bound of ${bound.toFixed(0)} MiB (docs/tuning.md, "Memory", at this run's settings)`,
          `accepted requests (probe): ${describe(probed!)}`,
        ],
      };
    } finally {
      await server.proc.stop();
    }
  },
};
