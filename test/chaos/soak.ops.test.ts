// The chaos soak, short, in `npm run test:ops` (docs/chaos.md): 40 s of S3 flapping, signals and
// restarts under load, then the drain and the audit. A new seed each run, printed; SOAK_SEED=N
// replays one (.ci/run sets one, so that CI runs the same schedule each time). The long version
// is `npm run soak`.
import { randomInt } from 'node:crypto';
import t from 'tap';
import { formatReport } from './report.js';
import { runSoak } from './soak.js';

const CHAOS_MS = 40_000;
const seed = process.env.SOAK_SEED === undefined ? randomInt(2 ** 31) : Number(process.env.SOAK_SEED);
if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`Expected \`SOAK_SEED\` to be an integer >= 0, got \`${process.env.SOAK_SEED}\``);

t.test(`chaos soak (seed ${seed}; replay: SOAK_SEED=${seed} npx tap test/chaos/soak.ops.test.ts)`, async (t) => {
  const report = await runSoak({ seed, durationMs: CHAOS_MS, owner: t, progress: (line) => t.comment(line) });
  t.comment(formatReport(report));
  const { audit, lives } = report;
  t.ok(lives.length >= 3, `the servers were stopped and restarted (${lives.length - 1} lives, then the drain)`);
  t.ok(audit.acked > 0, `${audit.acked} events acknowledged`);
  for (const life of lives) t.equal(life.summary?.unaccountedEvents, 0, `life ${life.n}: shutdown complete, unaccountedEvents 0`);
  t.ok(audit.missing.length <= report.dropped, `missing ${audit.missing.length} <= counted as dropped ${report.dropped}`);
  t.same(audit.duplicated.slice(0, 5), [], `no event stored twice (${audit.duplicated.length})`);
  t.same(report.failures, [], 'no loss and no defect');
});
