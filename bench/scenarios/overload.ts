// Scenario 5: offered load far above what one core can take, for 30 s (3 x --seconds): how many
// 503s, the latency accepted requests see, and peak memory against the bound the config implies.
import { measure, summarise } from '../lib/measure.js';
import { startProbe } from '../lib/probe.js';
import { BODIES, lossless, type Scenario } from '../lib/scenario.js';
import { settle, startServer } from '../lib/stack.js';

const MiB = 1024 * 1024;
// docs/tuning.md: base + channel + (open + cut + queued + 2 x in flight) batches + two bodies
// + bodies being read, at the defaults.
export const DEFAULT_MEMORY_BOUND_MIB = (240 * MiB + 64 * MiB + (2 + 8 + 2 * 4) * 8 * MiB + 2 * MiB + 32 * MiB) / MiB;

export const scenario: Scenario = {
  id: 'overload',
  title: '5. overload: 50-event arrays from 8x the connections, 30 s',
  async run(ctx) {
    const server = await startServer(ctx.s3.endpoint, ctx.serverEnv);
    try {
      const probe = startProbe(server.url);
      const round = await measure(server, BODIES.array.request, ctx.seconds * 3, ctx.connections * 8);
      const probed = await probe.stop();
      const final = (await settle(server)).counters;
      const figures = summarise([round], BODIES.array.events, server.proc.peakRssBytes());
      const requests = round.load.requests;
      return {
        id: this.id,
        title: this.title,
        server: {
          ...figures,
          rate503: round.load.non2xx / Math.max(requests, 1),
          acceptedP99Ms: probed.p99,
          acceptedP50Ms: probed.p50,
          probeRefusedWithRetryAfter: `${probed.refusedWithRetryAfter}/${probed.refused}`,
          memoryBoundMiB: DEFAULT_MEMORY_BOUND_MIB,
        },
        settled: lossless({ accepted: final.accepted, stored: final.stored, spilled: final.spilled, dropped: final.dropped }),
        notes: [
          `peak RSS ${figures.peakRssMiB.toFixed(0)} MiB against a bound of ${DEFAULT_MEMORY_BOUND_MIB} MiB`,
          `accepted requests (probe): p50 ${probed.p50.toFixed(2)} ms, p99 ${probed.p99.toFixed(2)} ms`,
        ],
      };
    } finally {
      await server.proc.stop();
    }
  },
};
