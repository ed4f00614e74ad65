// The power-loss run of power-loss.test.ts at many more cut points: each run its own seed (the
// first from POWER_LOSS_SEED, or drawn and printed), a random operation or a step of a segment's
// removal or of a spill, and a random number of requests. A failure names the run's seed, and
// POWER_LOSS_SEED=<seed> POWER_LOSS_RUNS=1 replays that run alone (what the cut leaves of an
// operation in flight follows the seed; which operation is in flight follows timing too).
import { randomInt } from 'node:crypto';
import t from 'tap';
import { Random } from '../chaos/random.js';
import { crashAndRecover, inSegmentRemoval, inSpill, type Plan, randomPlan, startWorld } from '../helpers/power-loss-run.js';

const first = process.env.POWER_LOSS_SEED === undefined ? randomInt(2 ** 31) : Number(process.env.POWER_LOSS_SEED);
const runs = Number(process.env.POWER_LOSS_RUNS ?? 150);
if (!Number.isSafeInteger(first) || first < 0) throw new Error(`Expected \`POWER_LOSS_SEED\` to be an integer >= 0, got \`${process.env.POWER_LOSS_SEED}\``);

function planFor(seed: number): Plan {
  const random = new Random(seed).fork('kind');
  const requests = random.between(12, 60);
  const kind = random.weighted([['random', 2], ['removal', 1], ['spill', 1]] as const);
  if (kind === 'removal') return inSegmentRemoval(seed, random.between(1, 8), requests);
  if (kind === 'spill') return inSpill(seed, random.between(1, 16), requests);
  return randomPlan(seed, requests);
}

t.test(`power cuts at ${runs} points (seeds ${first} on; replay one: POWER_LOSS_SEED=<seed> POWER_LOSS_RUNS=1 npx tap test/e2e/power-loss.ops.test.ts)`, async (t) => {
  const world = await startWorld(t);
  const cuts = new Map<string, number>();
  const failed: string[] = [];
  for (let seed = first; seed < first + runs; seed++) {
    const outcome = await crashAndRecover(world, planFor(seed));
    // Counted by operation and what it names, without the file's own name: what the runs covered.
    const where = outcome.cutBefore.replace(/\/\d{12}\.wal$/, '/<segment>').replace(/\/\.tmp-.*$/, '/.tmp-<file>').replace(/\/[^/]+\.jsonl\.gz$/, '/<file>');
    cuts.set(where, (cuts.get(where) ?? 0) + 1);
    if (outcome.problems.length > 0) failed.push(`seed ${seed} (cut before ${outcome.cutBefore}; ${outcome.acked} of ${outcome.sent} events acknowledged): ${outcome.problems.join('; ')}`);
  }
  t.comment(`cut before: ${[...cuts].sort((a, b) => b[1] - a[1]).map(([op, n]) => `${op} x${n}`).join(', ')}`);
  t.strictSame(failed, [], `every acknowledged event in S3 exactly once after each cut (replay a seed: POWER_LOSS_SEED=<seed> POWER_LOSS_RUNS=1)`);
});
