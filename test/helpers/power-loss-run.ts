// One power cut under load at ACK_LEVEL=disk, and the audit after it: an in-process pipeline whose
// WAL and DLQ go through a PowerLossDisk (./power-loss-disk.ts) takes a seeded stream of requests
// of distinct events (S3 refusing every PUT for a stretch of them when asked, so that batches spill
// to the DLQ) and then stops cleanly, until the power is cut before a chosen disk operation (or
// after the clean stop); the files go back to their durable state; a fresh pipeline on the same
// directories, on the real disk, replays the WAL and uploads it, and the DLQ is drained. Then S3 is read back: every event answered 'accepted' must be
// there exactly once, and no event twice.
//
// What does not go through the disk layer, and why that does not matter here: the start-up replay
// (src/wal/replay.ts, format.ts's scanSegment) reads and repairs with node:fs and the real disk,
// and runs after the revert, on the real files; the WAL's lock is taken in recover() on the real
// disk, and a lock is released with node:fs's unlinkSync (src/disk/lock.ts): locks are no durable
// state (one a power loss leaves behind is stale after the reboot, by its boot id). So a cut
// during a replay is not played.
import { mkdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { Disk } from '../../src/disk/disk.js';
import { drain } from '../../src/dlq/drain.js';
import { DlqStore } from '../../src/dlq/store.js';
import { createDlqMetrics } from '../../src/metrics/dlq.js';
import { createUploadMetrics } from '../../src/metrics/upload.js';
import { createWalMetrics } from '../../src/metrics/wal.js';
import type { PipelineOptions } from '../../src/pipeline.js';
import { createS3Client, S3Uploader } from '../../src/upload/s3.js';
import { startPipeline } from '../../src/wiring.js';
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
  /** The power goes off just before the first operation this picks; `where` is its path under the run's root. */
  readonly cutAt: (op: Op, where: string) => boolean;
  /** Requests [from, to) are sent while S3 answers every PUT 503 SlowDown (those batches spill to the DLQ). */
  readonly refuse?: readonly [from: number, to: number];
  /** Requests to send (fewer when the cut comes first); each holds 1 to 4 events. */
  readonly requests: number;
}

export interface Outcome {
  /** The operation the cut came before ('cut()' after a clean stop), its path under the run's root. */
  readonly cutBefore: string;
  readonly ops: number;
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
  const { problems, stored } = await recoverAndAudit(world, { walDir, dlqDir, prefix }, acked);
  const cutBefore = power.cutBefore!;
  return { cutBefore: cutBefore.path === '' ? cutBefore.name : `${cutBefore.name} ${relative(root, cutBefore.path)}`, ops: power.ops, sent: sent.length, acked: acked.size, stored, problems };
}

interface Dirs {
  readonly walDir: string;
  readonly dlqDir: string;
  readonly prefix: string;
}

/** The old instance: its WAL and DLQ on the power-loss disk, its PUTs through the proxy; runs until the power goes off. */
async function runUntilCut(world: World, plan: Plan, power: PowerLossDisk, random: Random, { walDir, dlqDir, prefix }: Dirs) {
  const disk = new Disk(power.fs);
  const client = gatedClient(world.proxy.endpoint, power);
  const uploadMetrics = createUploadMetrics(new Registry());
  const uploader = new S3Uploader(client.client, { bucket: BUCKET, maxAttempts: 1, timeoutMs: 5000 }, uploadMetrics, silent);
  const dlq = await DlqStore.open({ ...dlqOptions(dlqDir, prefix), instanceId: 'old', disk }, createDlqMetrics(new Registry()), silent);
  const wal = { ...WAL, dir: walDir, disk, holder: 'old', metrics: createWalMetrics(new Registry()) };
  const running = await startPipeline({ options: OPTIONS(prefix), ackLevel: 'disk', ackTimeoutMs: 60_000, wal, fresh: () => true }, { uploader, spill: dlq, metrics: uploadMetrics, log: silent });
  let refusing = false;
  world.proxy.decide = () => (refusing ? { status: 503, code: 'SlowDown' } : 'pass');
  const acked = new Set<string>();
  const sent: string[] = [];
  let open = 0;
  let answered = (): void => {};
  for (let i = 0; i < plan.requests && !power.isCut; i++) {
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
  if (!power.isCut) await running.pipeline.close(power.reverted);
  if (!power.isCut) await running.closeWal();
  if (!power.isCut) await power.cut();
  await power.reverted;
  await client.quiet();
  // The old instance ends here: its uploads aborted (a batch kept for another try, neither S3 nor
  // the dead disk taking it, would try again every second). Its locks are released as a reboot
  // would make them stale (a new boot id; this process keeps its own): the log's close writes
  // nothing more, every call refused.
  await running.pipeline.close(Promise.resolve());
  await running.closeWal();
  dlq.close();
  return { acked, sent };
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
