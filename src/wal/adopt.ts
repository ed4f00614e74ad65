// Shared root (DURABLE_ROOT): keeps this instance's lease fresh, and adopts the directory of an
// instance whose lease went stale: replays its WAL, drains its DLQ into S3, then removes it.
// Leases and the adopt lock: ./lease.ts. What it promises and costs: docs/durability.md.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { WalConfig } from '../config.js';
import { drain } from '../dlq/drain.js';
import { LOCK_FILE } from '../dlq/lock.js';
import { DlqStore } from '../dlq/store.js';
import type { DlqMetrics } from '../metrics/dlq.js';
import type { WalMetrics } from '../metrics/wal.js';
import type { S3Uploader } from '../upload/s3.js';
import { type AdoptLock, exists, LeaseWatch, takeAdoptLock, writeLease } from './lease.js';

/**
 * Replays the WAL in `walDir` of instance `deadId` through a pipeline of its own (built as the
 * server's is: src/wiring.ts), closes it by `stopped`, and says how many events stay in it.
 */
export type ReplayWal = (walDir: string, deadId: string, stopped: Promise<void>) => Promise<number>;

export interface AdoptionParts {
  readonly instanceId: string;
  readonly wal: WalConfig & { readonly sharedRoot: string };
  readonly replay: ReplayWal;
  readonly dlq: { readonly ttlSeconds: number | undefined; readonly prefix: string };
  readonly uploader: S3Uploader;
  readonly metrics: { readonly wal: WalMetrics; readonly dlq: DlqMetrics };
  /** This instance's own lease is fresh: an adopter that was itself paused must not go on. */
  readonly fresh: () => boolean;
  /** The monotonic clock other leases are judged on (./lease.ts LeaseWatch); a test's may run faster. */
  readonly now?: () => number;
}

class NotDone extends Error {}

export class Adopter {
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopping = false;
  #hurry: () => void = () => {};
  readonly #stopped = new Promise<void>((resolve) => (this.#hurry = resolve));
  /** Aborted by stop(): cuts the DLQ drain of an adoption in progress. */
  readonly #abort = new AbortController();
  readonly #watch: LeaseWatch;

  constructor(
    private readonly parts: AdoptionParts,
    private readonly log: Logger,
  ) {
    this.#watch = new LeaseWatch(parts.wal.leaseStaleMs, parts.now);
  }

  /** Looks for dead instances now and every half stale time. */
  start(): void {
    const every = Math.max(500, Math.floor(this.parts.wal.leaseStaleMs / 2));
    const tick = () => {
      this.#running = this.#scan().finally(() => {
        this.#running = undefined;
        if (!this.#stopping) this.#timer = setTimeout(tick, every);
      });
    };
    tick();
  }

  /** Stops looking; an adoption in progress spills what it holds to the DLQ and leaves the rest for another instance. */
  async stop(): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#timer);
    this.#hurry();
    this.#abort.abort();
    await this.#running;
  }

  async #scan(): Promise<void> {
    const { sharedRoot } = this.parts.wal;
    let names: string[];
    try {
      names = (await fs.readdir(sharedRoot, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
    } catch (err) {
      this.log.warn({ root: sharedRoot, err }, 'shared root unreadable; will look again');
      return;
    }
    this.#watch.retain(new Set(names.map((name) => path.join(sharedRoot, name))));
    for (const name of names) {
      if (this.#stopping) return;
      if (name === this.parts.instanceId) continue;
      const dir = path.join(sharedRoot, name);
      const lock = await this.#lockIfDead(dir).catch((err: unknown) => {
        // Unreadable (EIO, ESTALE, EMFILE): its holder may be alive, so it is judged again at the next scan.
        this.log.warn({ dir, err }, 'could not tell whether the instance of a directory is dead; will look again');
        return undefined;
      });
      if (lock === undefined) continue;
      try {
        await this.#adopt(dir, name, lock);
      } catch (err) {
        this.log.warn({ dir, err }, 'adopting a directory is not finished; will go on later');
      } finally {
        await lock.release().catch(() => {});
      }
    }
  }

  /** The adopt lock of `dir` if it holds something to adopt, its lease is stale and no live instance adopts it. */
  async #lockIfDead(dir: string): Promise<AdoptLock | undefined> {
    if (!((await exists(path.join(dir, 'wal'))) || (await exists(path.join(dir, 'dlq'))))) return undefined;
    if (!(await this.#watch.stale(dir))) return undefined;
    return takeAdoptLock(this.parts.wal.sharedRoot, dir, this.parts.instanceId, this.#watch);
  }

  async #adopt(dir: string, deadId: string, lock: AdoptLock): Promise<void> {
    this.log.info({ dir, dead: deadId }, 'adopting the directory of a dead instance: its lease is stale');
    // Fencing (./lease.ts): the holder, if only paused, finds its lease taken and exits.
    await writeLease(dir, this.parts.instanceId);
    // Its holder is dead (its lease is stale and we hold the adopt lock): its locks are stale too.
    for (const sub of ['wal', 'dlq']) await fs.rm(path.join(dir, sub, LOCK_FILE), { force: true });
    const walDir = path.join(dir, 'wal');
    await this.#stillOurs(lock);
    if (await exists(walDir)) await this.#replay(walDir, deadId);
    const dlqDir = path.join(dir, 'dlq');
    await this.#stillOurs(lock);
    if (await exists(dlqDir)) await this.#drain(dlqDir);
    if (this.#stopping) throw new NotDone('stopping');
    await this.#stillOurs(lock);
    await fs.rm(dir, { recursive: true, force: true });
    this.parts.metrics.wal.adoptedDirs.inc();
    this.log.info({ dir, dead: deadId }, 'adopted and removed the directory of a dead instance');
  }

  /**
   * Before each step that another adopter would also take: this instance was not itself paused
   * long enough to be judged dead, and no other survivor took the adoption over meanwhile.
   */
  async #stillOurs(lock: AdoptLock): Promise<void> {
    if (!this.parts.fresh()) throw new NotDone('this instance\'s own lease is not fresh');
    if (!(await lock.held())) throw new NotDone('another instance took the adoption over');
  }

  // The dead instance's WAL, under its own name: a batch it cut keeps its key, one cut here gets
  // the dead instance's log id, so that another adopter after us cuts the same.
  async #replay(walDir: string, deadId: string): Promise<void> {
    const unsettled = await this.parts.replay(walDir, deadId, this.#stopped);
    if (unsettled > 0) throw new NotDone(`${unsettled} events of the adopted WAL are not settled`);
  }

  async #drain(dlqDir: string): Promise<void> {
    const { metrics, dlq } = this.parts;
    const store = await DlqStore.open(
      { dir: dlqDir, maxBytes: Number.MAX_SAFE_INTEGER, maxFiles: Number.MAX_SAFE_INTEGER, whenFull: 'refuse', ttlSeconds: dlq.ttlSeconds, now: Date.now, repair: true, prefix: dlq.prefix, instanceId: this.parts.instanceId },
      metrics.dlq,
      this.log,
    );
    try {
      if (store.unusable !== undefined) throw new NotDone(`its DLQ is unusable: ${store.unusable}`);
      // Not live, so that a file S3 refuses does not page as S3 failing; one that fails is skipped and kept for the next try.
      const drained = await drain(store, this.parts.uploader, { signal: this.#abort.signal, metrics: metrics.dlq, log: this.log });
      if (store.files > 0) throw new NotDone(`${store.files} files left in its DLQ${drained.stopped === undefined ? '' : ` (${drained.stopped})`}`);
    } finally {
      store.close();
    }
  }
}
