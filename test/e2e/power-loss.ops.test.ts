// The power-loss run of power-loss.test.ts at many more cut points: each run its own seed (the
// first from POWER_LOSS_SEED, or drawn and printed), a random operation, a step of a segment's
// removal or of a spill, or just as a WAL write begins (most often leaving a torn tail), and a
// random number of requests; then, in two runs of three, a second cut during the recovery: at a
// random operation of it (before it or while it is in flight), or at a step of its repairs (a torn tail cut, a segment with no header
// removed, a settled segment removed) and what follows them, S3 refusing that recovery's PUTs in a
// third of them (what it replays spills to the DLQ). A failure names the run's seed, and
// POWER_LOSS_SEED=<seed> POWER_LOSS_RUNS=1 replays that run alone (what the cut leaves of an
// operation in flight follows the seed; which operation is in flight follows timing too).
import { randomInt } from 'node:crypto';
import t from 'tap';
import { Random } from '../chaos/random.js';
import { crashAndRecover, inRecoveryRepair, inSegmentRemoval, inSpill, type Plan, randomPlan, recoveryCutAtOp, startWorld, whileWriting } from '../helpers/power-loss-run.js';

const first = process.env.POWER_LOSS_SEED === undefined ? randomInt(2 ** 31) : Number(process.env.POWER_LOSS_SEED);
const runs = Number(process.env.POWER_LOSS_RUNS ?? 150);
if (!Number.isSafeInteger(first) || first < 0) throw new Error(`Expected \`POWER_LOSS_SEED\` to be an integer >= 0, got \`${process.env.POWER_LOSS_SEED}\``);

function planFor(seed: number): Plan {
  const random = new Random(seed).fork('kind');
  const requests = random.between(12, 60);
  const kind = random.weighted([['random', 2], ['removal', 1], ['spill', 1], ['writing', 1]] as const);
  let plan = randomPlan(seed, requests);
  if (kind === 'removal') plan = inSegmentRemoval(seed, random.between(1, 8), requests);
  if (kind === 'spill') plan = inSpill(seed, random.between(1, 16), requests);
  if (kind === 'writing') plan = whileWriting(seed, random.between(1, 2 * requests), requests);
  // A recovery makes 20 to 90 operations (the DLQ's opening, the replay, uploads, settles, removals, the drain).
  const second = random.weighted([['none', 1], ['random', 1], ['repair', 1]] as const);
  // S3 refusing the recovery's PUTs in a third of them: what it replays spills to the DLQ.
  const recoveryRefused = random.chance(1 / 3);
  if (second === 'random') return { ...recoveryCutAtOp(plan, random.between(1, 90), random.chance(0.5)), recoveryRefused };
  if (second === 'repair') return { ...inRecoveryRepair(plan, random.between(1, 10)), recoveryRefused };
  return plan;
}

/** Counted by operation and what it names, without the file's own name: what the runs covered. */
const kindOf = (cut: string): string => cut.replace(/\/\d{12}\.wal\b/, '/<segment>').replace(/\/\.tmp-[^ ]*/, '/.tmp-<file>').replace(/\/[^/ ]+\.jsonl\.gz\b/, '/<file>');

const tally = (counts: Map<string, number>): string => [...counts].sort((a, b) => b[1] - a[1]).map(([op, n]) => `${op} x${n}`).join(', ');

t.test(`power cuts at ${runs} points, and a second during the recovery in some (seeds ${first} on; replay one: POWER_LOSS_SEED=<seed> POWER_LOSS_RUNS=1 npx tap test/e2e/power-loss.ops.test.ts)`, async (t) => {
  const world = await startWorld(t);
  const cuts = new Map<string, number>();
  const recoveryCuts = new Map<string, number>();
  let repaired = 0;
  const failed: string[] = [];
  for (let seed = first; seed < first + runs; seed++) {
    const plan = planFor(seed);
    const outcome = await crashAndRecover(world, plan);
    const where = kindOf(outcome.cutBefore);
    cuts.set(where, (cuts.get(where) ?? 0) + 1);
    const second = outcome.recoveryCut;
    if (second !== undefined) recoveryCuts.set(kindOf(second.before), (recoveryCuts.get(kindOf(second.before)) ?? 0) + 1);
    if (second !== undefined && second.tornTails > 0) repaired++;
    const recovery = second === undefined ? '' : `, then before ${second.before} in the recovery${plan.recoveryRefused === true ? ', S3 refusing it' : ''}`;
    if (outcome.problems.length > 0) failed.push(`seed ${seed} (cut before ${outcome.cutBefore}${recovery}; ${outcome.acked} of ${outcome.sent} events acknowledged): ${outcome.problems.join('; ')}`);
  }
  t.comment(`cut before: ${tally(cuts)}`);
  t.comment(`second cut, in the recovery, before: ${tally(recoveryCuts)} ('cut()': after its clean stop); ${repaired} of those recoveries had found a torn tail by then`);
  t.strictSame(failed, [], `every acknowledged event in S3 exactly once after each cut (replay a seed: POWER_LOSS_SEED=<seed> POWER_LOSS_RUNS=1)`);
});
