// A power loss at ACK_LEVEL=disk, played through the disk layer (test/helpers/power-loss-disk.ts:
// every write not yet fsynced is lost): an in-process pipeline under load, the power cut before a
// chosen file-system operation, the files put back to what was durable, and a fresh pipeline on
// the same WAL_DIR and DLQ_DIR that replays and uploads; then every event answered 'accepted' is in
// S3 exactly once, and no event twice. Some runs cut twice: the recovery itself runs on a fresh
// power-loss disk, cut again (in its repair of the torn tail the first cut left, or at a random
// operation), and a third start on the real disk recovers. Fixed seeds and a bounded count here;
// the long randomised run is power-loss.ops.test.ts.
import t, { type Test } from 'tap';
import { crashAndRecover, inRecoveryRepair, inSegmentRemoval, inSpill, type Plan, randomPlan, recoveryCutAtOp, startWorld, whileWriting } from '../helpers/power-loss-run.js';

const world = await startWorld(t);

async function survives(t: Test, plan: Plan, expectCut?: RegExp, expectRecoveryCut?: RegExp): Promise<void> {
  const outcome = await crashAndRecover(world, plan);
  const second = outcome.recoveryCut === undefined ? '' : `, then before ${outcome.recoveryCut.before} in the recovery`;
  t.strictSame(outcome.problems, [], `seed ${plan.seed}, cut before ${outcome.cutBefore}${second}: ${outcome.acked} of ${outcome.sent} events acknowledged, ${outcome.stored} in S3`);
  if (expectCut !== undefined) t.match(outcome.cutBefore, expectCut, 'the cut fell where the plan meant it to');
  if (expectRecoveryCut !== undefined) t.match(outcome.recoveryCut?.before, expectRecoveryCut, 'the second cut too');
}

t.test('the cut at a random operation under load, S3 refusing a stretch of requests in some runs', async (t) => {
  for (let seed = 1; seed <= 4; seed++) await survives(t, randomPlan(seed));
});

t.test('the cut at each step of a WAL segment\'s removal (unlink, then the directory fsync)', async (t) => {
  for (let k = 1; k <= 4; k++) await survives(t, inSegmentRemoval(100 + k, k), k === 1 ? /^unlink wal\/\d{12}\.wal$/ : /^(unlink wal\/\d{12}\.wal|open wal|sync wal|close wal)$/);
});

t.test('the cut at each step of a spill to the DLQ (temp file written, fsynced, renamed, directory fsynced)', async (t) => {
  for (let k = 1; k <= 8; k++) await survives(t, inSpill(200 + k, k), k === 1 ? /^open dlq\/\.tmp-/ : /^\w+ dlq/);
});

t.test('a second cut during the recovery: at each step of its cut of the torn tail the first cut left (truncate, fsync, close), and at random operations', async (t) => {
  const steps = [/^truncate wal\/\d{12}\.wal$/, /^sync wal\/\d{12}\.wal$/, /^close wal\/\d{12}\.wal$/];
  for (let k = 1; k <= 3; k++) await survives(t, inRecoveryRepair(whileWriting(300 + k, 2), k), /^writev wal\/\d{12}\.wal \(in flight\)$/, steps[k - 1]);
  for (const [seed, at] of [[311, 15], [312, 40]] as const) await survives(t, recoveryCutAtOp(randomPlan(seed), at));
});
