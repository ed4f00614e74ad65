// The chaos soak (docs/chaos.md): real servers, one after another on the same DLQ directory, under
// a steady acking load plus padded and slow clients, while S3 flaps (faults.ts) and each server
// is stopped by a signal (sometimes two) at a random moment. At the end a last server with S3
// healthy drains the DLQ, and the audit checks every 202: in S3 exactly once, or counted as
// dropped by dlq_events_dropped_total. One seed fixes the schedule; interleavings still depend
// on timing, so a seed replays the same chaos, not necessarily the same race.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { gunzipSync } from 'node:zlib';
import { GetObjectCommand, ListObjectsCommand, type S3Client } from '@aws-sdk/client-s3';
import { audit, AckingClient, type AuditReport, serverCounters } from '../harness/zero-loss.js';
import type { Owner } from '../helpers/fault-proxy.js';
import { BUCKET, s3Env, startS3 } from '../helpers/s3.js';
import { eventually, type RunningServer, startServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';
import { OddClients, type OddClientStats } from './clients.js';
import { FlappingS3, type Phase } from './faults.js';
import { describeLife, type Life, metricsText, newLife, stop } from './lives.js';
import { Random } from './random.js';

/** Short settings, so that batches cut, time out, spill and re-upload many times a minute. */
export const SETTINGS: Readonly<Record<string, string>> = {
  BATCH_MAX_AGE_MS: '200',
  BATCH_MAX_EVENTS: '500',
  UPLOAD_TIMEOUT_MS: '1000',
  SHUTDOWN_TIMEOUT_MS: '2000',
  DLQ_REUPLOAD_IDLE_MS: '100',
  // About a second of the load: with the upload queue, a hang of a few seconds fills it, and the
  // front answers 503 queue_full.
  CHANNEL_MAX_EVENTS: '1000',
};

// The steady load: 3 loops, each at most one 5-event request every 10 ms, so the soak leaves
// room on a shared machine.
const LOAD = { concurrency: 3, eventsPerRequest: 5, paceMs: 10 } as const;
// A server's life between two signals (now and then a short one, signalled while it still
// re-uploads what the last one spilled); an S3 phase.
const LIFE_MS = [3000, 10_000] as const;
const SHORT_LIFE_MS = [200, 1000] as const;
const PHASE_MS = [1000, 5000] as const;
// Outcomes a client may see from a server that is up, shutting down or gone; anything else (a
// 400, a 413 for a body under the limit, a 500) is a defect.
const EXPECTED_OUTCOMES = new Set(['202', '503 queue_full', '503 shutting_down', 'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'closed without an answer']);

export interface SoakOptions {
  readonly seed: number;
  /** How long the chaos lasts; the drain and the audit come after. */
  readonly durationMs: number;
  readonly owner: Owner;
  /** Server settings over SETTINGS, e.g. a small DLQ_MAX_FILES. */
  readonly env?: Readonly<Record<string, string>>;
  /** Called with one line per phase, signal and exit. */
  readonly progress?: (line: string) => void;
}

export type { Life } from './lives.js';

export interface SoakReport {
  readonly seed: number;
  readonly durationMs: number;
  readonly settings: Readonly<Record<string, string>>;
  /** The settings given over SETTINGS (`--env` on the command line). */
  readonly env: Readonly<Record<string, string>>;
  readonly phases: readonly Phase[];
  readonly lives: readonly Life[];
  readonly audit: AuditReport;
  /** Σ over every life of the events counted as dropped: what may be missing. */
  readonly dropped: number;
  readonly load: { requests: number; outcomes: Map<string, number> };
  /** Acknowledged ids by client. */
  readonly acked: { load: number; padded: number; slow: number };
  readonly padded: OddClientStats;
  readonly slow: OddClientStats;
  /** Empty when the run found no loss and no defect. */
  readonly failures: readonly string[];
  /** Worth a look, not a failure. */
  readonly notes: readonly string[];
}

export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const { owner, durationMs, progress = () => {} } = options;
  const random = new Random(options.seed);
  const startedAt = Date.now();
  const at = () => `+${((Date.now() - startedAt) / 1000).toFixed(1)}s`;
  const s3 = await startS3(owner);
  const flapping = await FlappingS3.start(owner, s3, random.fork('s3'), startedAt);
  const dlqDir = tempDir(owner, 'chaos-dlq');
  const settings = { ...SETTINGS, ...options.env };
  const env = { ...s3Env(flapping.endpoint), ...settings, DLQ_DIR: dlqDir };
  const lives: Life[] = [];
  let current: RunningServer | undefined;

  const load = new AckingClient({ url: undefined, ...LOAD, maxRequests: Math.ceil(durationMs / LOAD.paceMs) * LOAD.concurrency });
  const odd = new OddClients(load, random.fork('clients'), () => current?.url);
  const loading = Promise.all([load.run(), odd.run()]);
  const flaps = flapping.run(AbortSignal.timeout(durationMs), ...PHASE_MS);
  let seenPhases = 0;
  const logPhases = () => {
    for (const p of flapping.phases.slice(seenPhases)) progress(`+${(p.atMs / 1000).toFixed(1)}s S3 ${p.kind}${p.share < 1 ? ` (${Math.round(p.share * 100)}% of PUTs)` : ''} for ${p.ms} ms`);
    seenPhases = flapping.phases.length;
  };
  const phaseLog = setInterval(logPhases, 200);

  try {
    const lifeRandom = random.fork('lives');
    while (Date.now() - startedAt < durationMs) {
      // Drawn up front, whatever happens next, so the schedule depends on the seed alone.
      const lifeMs = lifeRandom.chance(0.15) ? lifeRandom.between(...SHORT_LIFE_MS) : lifeRandom.between(...LIFE_MS);
      const first = lifeRandom.weighted([['SIGTERM', 6], ['SIGINT', 2], ['SIGHUP', 2]] as const);
      const second = lifeRandom.chance(0.3) ? lifeRandom.weighted([['SIGTERM', 1], ['SIGINT', 1], ['SIGHUP', 1]] as const) : undefined;
      const secondAfterMs = lifeRandom.between(20, 1500);
      const life = newLife(lives.length, false, Date.now() - startedAt);
      lives.push(life);
      current = await startServer(owner, env);
      load.retarget(current.url);
      progress(`${at()} life ${life.n} up on port ${current.port}`);
      await sleep(Math.min(lifeMs, Math.max(0, durationMs - (Date.now() - startedAt))));
      await stop(current, life, first, second === undefined ? undefined : { signal: second, afterMs: secondAfterMs });
      current = undefined;
      load.retarget(undefined);
      progress(`${at()} life ${life.n} ${describeLife(life)}`);
    }
  } finally {
    load.stop();
    odd.stop();
    await loading;
    await flaps;
    clearInterval(phaseLog);
    logPhases();
  }

  // The last server: S3 healthy, no load, the same DLQ directory. It must upload everything left.
  await flapping.heal();
  const life = newLife(lives.length, true, Date.now() - startedAt);
  lives.push(life);
  const last = await startServer(owner, env);
  progress(`${at()} final life ${life.n} up, draining the DLQ`);
  try {
    await eventually(async () => serverCounters(await metricsText(last)).dlqEvents === 0, 1200, 100);
  } catch {
    life.problems.push('the DLQ did not drain with S3 healthy');
  }
  await stop(last, life, 'SIGTERM');
  progress(`${at()} final life ${life.n} ${describeLife(life)}`);

  // A PUT released late may still be writing; s3rver, unlike S3, shows a half-written object.
  await flapping.quiet();
  const notes: string[] = [];
  let report: AuditReport | undefined;
  for (let attempt = 1; report === undefined; attempt++) {
    try {
      report = await audit(load, { client: s3.client }, dlqDir);
    } catch (err) {
      if (attempt === 3) throw new Error(`the audit could not read S3 (seed ${options.seed}): ${(err as Error).message}; ${await unreadable(s3.client)}`);
      notes.push(`the audit's read of S3 failed once (${(err as Error).message}); read again`);
      await sleep(1000);
    }
  }
  const dropped = lives.reduce((sum, l) => sum + l.droppedByMetric + l.droppedInShutdown, 0);
  const failures = lives.flatMap((l) => l.problems.map((p) => `life ${l.n}: ${p}`));
  if (report.missing.length > dropped) failures.push(`${report.missing.length} acknowledged events missing, only ${dropped} counted as dropped; e.g. ${report.missing.slice(0, 5).join(', ')}`);
  if (report.duplicated.length > 0) failures.push(`${report.duplicated.length} events stored more than once; e.g. ${report.duplicated.slice(0, 5).join(', ')}`);
  if (report.unexpected.length > 0) failures.push(`${report.unexpected.length} events stored that were refused; e.g. ${report.unexpected.slice(0, 5).join(', ')}`);
  if (report.inDlq > 0) failures.push(`${report.inDlq} events still in the DLQ after the drain`);
  const corrupt = join(dlqDir, 'corrupt');
  if (existsSync(corrupt) && readdirSync(corrupt).length > 0) failures.push(`DLQ files set aside as corrupt: ${readdirSync(corrupt).join(', ')}`);
  for (const [who, outcomes] of [['load', load.outcomes], ['padded client', odd.padded.outcomes], ['slow client', odd.slow.outcomes]] as const) {
    const wrong = [...outcomes].filter(([o]) => !EXPECTED_OUTCOMES.has(o) && o !== 'timeout');
    if (wrong.length > 0) failures.push(`${who} got answers no valid request should: ${JSON.stringify(wrong)}`);
  }
  const padded = [...load.acked].filter((id) => id.includes('-padded-')).length;
  const slow = [...load.acked].filter((id) => id.includes('-slow-')).length;
  const timeouts = (load.outcomes.get('timeout') ?? 0) + (odd.padded.outcomes.get('timeout') ?? 0) + (odd.slow.outcomes.get('timeout') ?? 0);
  if (timeouts > 0) notes.push(`${timeouts} requests unanswered after 10-15 s (a slow machine, or a hang)`);
  if (report.missing.length < dropped) notes.push(`${dropped - report.missing.length} of the events counted as dropped are not missing: their 202 never reached the client, or S3 has them anyway (a PUT that landed after its client gave up)`);
  return {
    seed: options.seed,
    durationMs,
    settings,
    env: options.env ?? {},
    phases: flapping.phases,
    lives,
    audit: report,
    dropped,
    load: { requests: load.requests, outcomes: load.outcomes },
    acked: { load: report.acked - padded - slow, padded, slow },
    padded: odd.padded,
    slow: odd.slow,
    failures,
    notes,
  };
}

/** Which objects S3 fails to list or read, and why: for a report that names them. */
async function unreadable(client: S3Client): Promise<string> {
  const found: string[] = [];
  try {
    const keys: string[] = [];
    for (let truncated = true; truncated; ) {
      const listed = await client.send(new ListObjectsCommand({ Bucket: BUCKET, Marker: keys.at(-1) }));
      keys.push(...(listed.Contents ?? []).map((c) => c.Key!));
      truncated = listed.IsTruncated === true && (listed.Contents ?? []).length > 0;
    }
    // The server's preflight marker (`<prefix>/_preflight`) is not a batch.
    for (const Key of keys.filter((key) => !key.endsWith('/_preflight'))) {
      try {
        gunzipSync(await (await client.send(new GetObjectCommand({ Bucket: BUCKET, Key }))).Body!.transformToByteArray());
      } catch (err) {
        found.push(`${Key}: ${(err as Error).message}`);
      }
    }
  } catch (err) {
    found.push(`listing failed: ${(err as Error).message}`);
  }
  return found.length === 0 ? 'every object reads now' : `unreadable: ${found.join('; ')}`;
}
