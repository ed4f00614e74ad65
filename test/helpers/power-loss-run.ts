// One power cut under load at ACK_LEVEL=disk (or two: the second during the recovery), and the
// audit after it: an in-process pipeline whose WAL and DLQ go through a PowerLossDisk
// (./power-loss-disk.ts) takes a seeded stream of requests of distinct events (S3 refusing every PUT
// for a stretch of them when asked, so that batches spill to the DLQ) and then stops cleanly,
// until the power is cut before a chosen disk operation (or during it, or after the clean stop);
// the files go back to their durable state. With a second cut, the next start (the DLQ's opening,
// the WAL's replay and its repairs, uploads, settles, segment removals, the DLQ drain) runs on a
// fresh PowerLossDisk until its power is cut too, and its files go back to their durable state.
// Then a start on the real disk replays the WAL and uploads it, and the DLQ is drained. Then S3 is
// read back: every event answered 'accepted' must be there exactly once, and no event twice.
//
// What does not go through the disk layer, and why that does not matter here: the WAL's lock is
// taken in recover() on the real disk, and a lock is released with node:fs's unlinkSync
// (src/disk/lock.ts): locks are no durable state (one a power loss leaves behind is stale after the
// reboot, by its boot id). This process keeps its boot id and pid, so the locks it left are
// removed after each cut, as the reboot would make them stale.
import { mkdirSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { Disk } from '../../src/disk/disk.js';
import { drain } from '../../src/dlq/drain.js';
import { LOCK_FILE } from '../../src/dlq/lock.js';
import { DlqStore } from '../../src/dlq/store.js';
import { createDlqMetrics, type DlqMetrics } from '../../src/metrics/dlq.js';
import { createUploadMetrics } from '../../src/metrics/upload.js';
import { createWalMetrics, type WalMetrics } from '../../src/metrics/wal.js';
import type { PipelineOptions } from '../../src/pipeline.js';
import { createS3Client, S3Uploader } from '../../src/upload/s3.js';
import { type RunningPipeline, startPipeline } from '../../src/wiring.js';
import { Random } from '../chaos/random.js';
import { type FaultProxy, type Owner, startFaultProxy } from './fault-proxy.js';
import { entry } from './pipeline.js';
import { type Op, PowerCut, PowerLossDisk } from './power-loss-disk.js';
import { BUCKET, readObjects, type S3Server, startS3 } from './s3.js';
import { tempDir } from './temp.js';

const silent = pino({ level: 'silent' });
const never = new Promise<void>(() => {});

/** One S3 server, and the fault proxy the crashing pipelines PUT through, for every run of a test file. */
export interface World {
  readonly owner: Owner;
  readonly s3: S3Server;
  readonly proxy: FaultProxy;
}

export async function startWorld(owner: Owner): Promise<World> {
  const s3 = await startS3(owner);
  return { owner, s3, proxy: await startFaultProxy(owner, s3) };
}

export interface Plan {
  /** Names the run (its S3 prefix) and seeds its requests and what an operation in flight at the cut leaves. */
  readonly seed: number;
  /** The power goes off just before the first operation this picks (or while it is in flight: 'during'); `where` is its path under the run's root. */
  readonly cutAt: (op: Op, where: string) => boolean | 'during';
  /** Requests [from, to) are sent while S3 answers every PUT 503 SlowDown (those batches spill to the DLQ). */
  readonly refuse?: readonly [from: number, to: number];
  /** Requests to send (fewer when the cut comes first); each holds 1 to 4 events. */
  readonly requests: number;
  /**
   * A second cut, during the recovery: the next start (replay and its repairs, uploads, settles,
   * segment removals, the DLQ drain) runs on a fresh power-loss disk until the first operation this
   * picks (counted on that disk); undefined: no such run, the recovery is on the real disk at once.
   */
  readonly recoveryCutAt?: (op: Op, where: string) => boolean | 'during';
  /** S3 answers every PUT of that recovery 503 SlowDown: what it replays spills to the DLQ. */
  readonly recoveryRefused?: boolean;
}

export interface Outcome {
  /** The operation the cut came before ('cut()' after a clean stop), its path under the run's root. */
  readonly cutBefore: string;
  readonly ops: number;
  /** With a second cut: the operation it came before, as `cutBefore` names it, and the torn tails the recovery cut before it (wal_torn_tails_total). */
  readonly recoveryCut?: { readonly before: string; readonly ops: number; readonly tornTails: number };
  readonly sent: number;
  readonly acked: number;
  /** Events in S3 after the recovery (acknowledged or not). */
  readonly stored: number;
  /** What the audit found wrong: empty when every acknowledged event is in S3 once, and none twice. */
  readonly problems: string[];
}

/** A seeded plan: `requests` requests, the cut before a random one of the operations they make, S3 refusing a random stretch of them half the time. */
export function randomPlan(seed: number, requests = 24): Plan {
  const random = new Random(seed).fork('plan');
  // A run of 24 requests makes about 30 to 40 operations; a cut past them all comes once every request is answered.
  const at = random.between(5, requests + 16);
  const refuse = random.chance(0.5) ? ([random.between(0, requests / 3), random.between(requests / 3, requests)] as const) : undefined;
  return { seed, requests, refuse, cutAt: (op) => op.n === at };
}

/** The cut before the `k`-th operation `counts` picks (from 1), counting from the first one `begins` picks on. */
export function cutAtNth(begins: (op: Op, where: string) => boolean, counts: (op: Op, where: string) => boolean, k: number): Plan['cutAt'] {
  let begun = false;
  let seen = 0;
  return (op, where) => {
    begun ||= begins(op, where);
    return begun && counts(op, where) && ++seen === k;
  };
}

/** A segment's removal: the first unlink of a WAL segment begins it; then each unlink and each use of WAL_DIR itself (its fsyncs). */
export function inSegmentRemoval(seed: number, k: number, requests = 16): Plan {
  const unlink = (op: Op, where: string) => op.name === 'unlink' && /^wal\/\d{12}\.wal$/.test(where);
  return { seed, requests, cutAt: cutAtNth(unlink, (op, where) => where === 'wal' || unlink(op, where), k) };
}

/** A spill to the DLQ, S3 refusing every PUT: the first DLQ temp file opened begins it; then every operation in DLQ_DIR (write, fsync, rename, directory fsync). */
export function inSpill(seed: number, k: number, requests = 16): Plan {
  const begins = (op: Op, where: string) => op.name === 'open' && where.startsWith('dlq/.tmp-');
  return { seed, requests, refuse: [0, requests], cutAt: cutAtNth(begins, (_op, where) => where === 'dlq' || where.startsWith('dlq/'), k) };
}

/** `plan`, and a second cut during its recovery, before the `at`-th operation of that run (or while it is in flight: `during`). */
export function recoveryCutAtOp(plan: Plan, at: number, during = false): Plan {
  const cut = during ? 'during' : true;
  return { ...plan, recoveryCutAt: (op) => op.n === at && cut };
}

/**
 * `plan`, and a second cut during its recovery, in its repairs: the first truncate or unlink of a
 * WAL segment begins it (a torn tail cut, a segment with no header removed, or else a settled
 * segment removed); then every operation in WAL_DIR (that one, its fsyncs, the reads of the
 * segments after it, ...), the cut before the `k`-th. No cut when the recovery makes fewer.
 */
export function inRecoveryRepair(plan: Plan, k: number): Plan {
  const begins = (op: Op, where: string) => (op.name === 'truncate' || op.name === 'unlink') && /^wal\/\d{12}\.wal$/.test(where);
  return { ...plan, recoveryCutAt: cutAtNth(begins, (_op, where) => where === 'wal' || where.startsWith('wal/'), k) };
}

/** The cut while the `k`-th write to a WAL segment is in flight: it leaves a random prefix of its bytes, most often a torn tail for the recovery to cut. */
export function whileWriting(seed: number, k: number, requests = 16): Plan {
  let writes = 0;
  return { seed, requests, cutAt: (op, where) => (op.name === 'writev' && /^wal\/\d{12}\.wal$/.test(where) && ++writes === k ? 'during' : false) };
}

const OPTIONS = (prefix: string): PipelineOptions => ({
  channelMaxEvents: 1000,
  channelMaxBytes: 1 << 20,
  batch: { maxEvents: 12, maxBytes: 1 << 20, maxAgeMs: 20, prefix, instanceId: 'pl' },
  upload: { concurrency: 2, maxQueuedBatches: 4, gzipLevel: 1, zstdLevel: 1 },
});

// Small segments, so that segments fill, settle and are removed many times in one run.
const WAL = { maxBytes: 1 << 22, syncIntervalMs: 0, syncBytes: 1 << 16, segmentBytes: 512 };

const dlqOptions = (dir: string, prefix: string) => ({ dir, maxBytes: 1 << 24, maxFiles: 10_000, whenFull: 'refuse' as const, ttlSeconds: undefined, now: Date.now, repair: true, prefix });

export async function crashAndRecover(world: World, plan: Plan): Promise<Outcome> {
  const root = tempDir(world.owner, 'power');
  const walDir = join(root, 'wal');
  const dlqDir = join(root, 'dlq');
  mkdirSync(walDir);
  mkdirSync(dlqDir);
  const prefix = `raw/s${plan.seed}`;
  const random = new Random(plan.seed);
  const power = new PowerLossDisk({ cutAt: (op) => plan.cutAt(op, relative(root, op.path)), random: random.fork('disk') });
  const { acked, sent } = await runUntilCut(world, plan, power, random.fork('requests'), { walDir, dlqDir, prefix });
  let recoveryCut: Outcome['recoveryCut'];
  if (plan.recoveryCutAt !== undefined) {
    const second = new PowerLossDisk({ cutAt: (op) => plan.recoveryCutAt!(op, relative(root, op.path)), random: random.fork('recovery disk') });
    const tornTails = await recoverUntilCut(world, second, { walDir, dlqDir, prefix }, plan.recoveryRefused === true);
    recoveryCut = { before: named(second, root), ops: second.ops, tornTails };
  }
  const { problems, stored } = await recoverAndAudit(world, { walDir, dlqDir, prefix }, acked);
  return { cutBefore: named(power, root), ops: power.ops, recoveryCut, sent: sent.length, acked: acked.size, stored, problems };
}

/** Where a disk's power was cut, as an outcome names it: the operation and its path under the run's root ('cut()' alone), '(in flight)' when it was cut during it. */
function named(power: PowerLossDisk, root: string): string {
  const op = power.cutBefore!;
  return op.path === '' ? op.name : `${op.name} ${relative(root, op.path)}${power.cutInFlight ? ' (in flight)' : ''}`;
}

interface Dirs {
  readonly walDir: string;
  readonly dlqDir: string;
  readonly prefix: string;
}

/** An instance on a power-loss disk: its WAL and DLQ go through it, its PUTs through the proxy, gated by its power. */
interface Powered {
  readonly power: PowerLossDisk;
  readonly client: ReturnType<typeof gatedClient>;
  readonly uploader: S3Uploader;
  readonly dlqMetrics: DlqMetrics;
  readonly walMetrics: WalMetrics;
  /** Undefined when the power went off while it was opened. */
  readonly dlq: DlqStore | undefined;
  /** Undefined when the power went off before it started (in the WAL's replay, say). */
  readonly running: RunningPipeline | undefined;
}

/** Opens the DLQ, then replays the WAL into a pipeline, all on `power`; a cut on the way leaves the rest undefined. */
async function startOn(world: World, power: PowerLossDisk, { walDir, dlqDir, prefix }: Dirs, holder: string): Promise<Powered> {
  const disk = new Disk(power.fs);
  const client = gatedClient(world.proxy.endpoint, power);
  const uploadMetrics = createUploadMetrics(new Registry());
  const dlqMetrics = createDlqMetrics(new Registry());
  const walMetrics = createWalMetrics(new Registry());
  const uploader = new S3Uploader(client.client, { bucket: BUCKET, maxAttempts: 1, timeoutMs: 5000 }, uploadMetrics, silent);
  let dlq: DlqStore | undefined;
  let running: RunningPipeline | undefined;
  try {
    dlq = await DlqStore.open({ ...dlqOptions(dlqDir, prefix), instanceId: holder, disk }, dlqMetrics, silent);
    const wal = { ...WAL, dir: walDir, disk, holder, metrics: walMetrics };
    running = await startPipeline({ options: OPTIONS(prefix), ackLevel: 'disk', ackTimeoutMs: 60_000, wal, fresh: () => true }, { uploader, spill: dlq, metrics: uploadMetrics, log: silent });
  } catch (err) {
    if (!power.isCut) throw err;
  }
  return { power, client, uploader, dlqMetrics, walMetrics, dlq, running };
}

/**
 * The power goes off now (if it is not off already), the files go back to their durable state, and
 * the instance ends: its uploads aborted (a batch kept for another try, neither S3 nor the dead
 * disk taking it, would try again every second), its locks released as a reboot would make them
 * stale (a new boot id; this process keeps its own): the log's close writes nothing more, every
 * call refused. A lock the revert put back (its creation made durable by a later fsync of its
 * directory, before this process removed it) is this process's, alive by its boot id and pid:
 * removed too.
 */
async function powerOff({ power, client, dlq, running }: Powered, { walDir, dlqDir }: Dirs): Promise<void> {
  if (!power.isCut) await power.cut();
  await power.reverted;
  await client.quiet();
  await running?.pipeline.close(Promise.resolve());
  await running?.closeWal();
  dlq?.close();
  for (const dir of [walDir, dlqDir]) rmSync(join(dir, LOCK_FILE), { force: true });
}

/** The old instance: takes requests until the power goes off, or stops cleanly first. */
async function runUntilCut(world: World, plan: Plan, power: PowerLossDisk, random: Random, dirs: Dirs) {
  let refusing = false;
  world.proxy.decide = () => (refusing ? { status: 503, code: 'SlowDown' } : 'pass');
  const instance = await startOn(world, power, dirs, 'old');
  const { running } = instance;
  const acked = new Set<string>();
  const sent: string[] = [];
  let open = 0;
  let answered = (): void => {};
  for (let i = 0; running !== undefined && i < plan.requests && !power.isCut; i++) {
    refusing = plan.refuse !== undefined && i >= plan.refuse[0] && i < plan.refuse[1];
    const ids = Array.from({ length: random.between(1, 4) }, (_, k) => `${plan.seed}-${i}-${k}`);
    sent.push(...ids);
    const outcome = running.pipeline.accept(
      entry(...ids.map((id) => `{"id":"${id}"}`)),
      (told) => {
        if (told === 'accepted') for (const id of ids) acked.add(id);
        open--;
        answered();
      },
    );
    if (outcome === 'pending') open++;
    // A few requests in flight at a time, so that group writes, cuts, uploads and removals interleave.
    while (open >= 6 && !power.isCut) await new Promise<void>((resolve) => (answered = resolve));
  }
  while (open > 0 && !power.isCut) await new Promise<void>((resolve) => (answered = resolve));
  refusing = false;
  // Every request answered: a clean stop, unless the power goes first (uploads of what is held,
  // then the WAL's removal of every segment, both through the disk that loses power); then off.
  // The power cut is the close's deadline: past it, nothing can be stored or spilled.
  if (running !== undefined && !power.isCut) await running.pipeline.close(power.reverted);
  if (running !== undefined && !power.isCut) await running.closeWal();
  await powerOff(instance, dirs);
  return { acked, sent };
}

/**
 * The next start, on a fresh power-loss disk, S3 passing every PUT (or refusing each): replay (and its repairs),
 * uploads, settles and segment removals, the DLQ drain, a clean stop, until the power goes off
 * (after the clean stop at the latest). It takes no requests. Returns the torn tails its replay cut.
 */
async function recoverUntilCut(world: World, power: PowerLossDisk, dirs: Dirs, refused: boolean): Promise<number> {
  world.proxy.decide = () => (refused ? { status: 503, code: 'SlowDown' } : 'pass');
  const instance = await startOn(world, power, dirs, 'mid');
  const { running, dlq, uploader, dlqMetrics, walMetrics } = instance;
  // The drain stops with the power (else it would go on failing file after file).
  const off = new AbortController();
  power.reverted.then(() => off.abort(), () => {});
  try {
    if (running !== undefined && !power.isCut) await running.pipeline.close(power.reverted);
    if (dlq !== undefined && !power.isCut) await drain(dlq, uploader, { metrics: dlqMetrics, log: silent, signal: off.signal });
    if (running !== undefined && !power.isCut) await running.closeWal();
  } catch (err) {
    if (!power.isCut) throw err;
  }
  await powerOff(instance, dirs);
  return (await walMetrics.tornTails.get()).values[0]?.value ?? 0;
}

/** The next start, on the real disk and straight to S3: replay, upload, drain the DLQ; then what S3 holds against what was acknowledged. */
async function recoverAndAudit(world: World, { walDir, dlqDir, prefix }: Dirs, acked: ReadonlySet<string>): Promise<{ problems: string[]; stored: number }> {
  const uploadMetrics = createUploadMetrics(new Registry());
  const dlqMetrics = createDlqMetrics(new Registry());
  const uploader = new S3Uploader(world.s3.client, { bucket: BUCKET, maxAttempts: 3, timeoutMs: 5000 }, uploadMetrics, silent);
  const dlq = await DlqStore.open({ ...dlqOptions(dlqDir, prefix), instanceId: 'new' }, dlqMetrics, silent);
  const wal = { ...WAL, dir: walDir, holder: 'new', metrics: createWalMetrics(new Registry()) };
  const running = await startPipeline({ options: OPTIONS(prefix), ackLevel: 'disk', ackTimeoutMs: 60_000, wal, fresh: () => true }, { uploader, spill: dlq, metrics: uploadMetrics, log: silent });
  const summary = await running.pipeline.close(never);
  const drained = await drain(dlq, uploader, { metrics: dlqMetrics, log: silent });
  const unsettled = await running.closeWal();
  dlq.close();
  const problems: string[] = [];
  if (summary.stored !== summary.accepted) problems.push(`the recovery stored ${summary.stored} of the ${summary.accepted} events it replayed`);
  if (drained.failed + drained.unreadable + drained.kept > 0 || dlq.files > 0) problems.push(`the DLQ drain left files: ${JSON.stringify(drained)}`);
  if (unsettled > 0) problems.push(`${unsettled} events left unsettled in the WAL after the recovery`);
  const copies = new Map<string, number>();
  for (const object of await readObjects(world.s3.client, BUCKET, `${prefix}/`)) {
    for (const { event } of object.records) copies.set(String(event.id), (copies.get(String(event.id)) ?? 0) + 1);
  }
  const lost = [...acked].filter((id) => !copies.has(id));
  const twice = [...copies].filter(([, n]) => n > 1).map(([id, n]) => `${id} x${n}`);
  if (lost.length > 0) problems.push(`${lost.length} events acknowledged and not in S3: ${few(lost)}`);
  if (twice.length > 0) problems.push(`${twice.length} events in S3 more than once: ${few(twice)}`);
  let stored = 0;
  for (const n of copies.values()) stored += n;
  return { problems, stored };
}

/** The first few of a list, for a message: ids are `<seed>-<request>-<event>`. */
const few = (ids: string[]): string => ids.slice(0, 8).join(', ') + (ids.length > 8 ? ', ...' : '');

/**
 * An S3 client whose requests stop with the power: none is sent after the cut, and one in flight
 * at the cut is never answered to its caller (S3 may have stored it). A mock, as the disk is: no
 * real fault silences one client of a process; `quiet()` waits for those in flight to end.
 */
function gatedClient(endpoint: string, power: PowerLossDisk) {
  const client = createS3Client({ endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
  const inFlight = new Set<Promise<unknown>>();
  client.middlewareStack.add(
    (next) => async (args) => {
      if (power.isCut) throw new PowerCut();
      const sending = next(args);
      inFlight.add(sending);
      const forget = () => inFlight.delete(sending);
      sending.then(forget, forget);
      const result = await sending;
      if (power.isCut) throw new PowerCut();
      return result;
    },
    { step: 'deserialize', name: 'powerGate' },
  );
  return {
    client,
    async quiet() {
      while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
      client.destroy();
    },
  };
}
