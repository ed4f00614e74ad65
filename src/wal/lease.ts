// Leases on a shared root (DURABLE_ROOT, EFS): each instance keeps ROOT/<instance>/lease fresh; a
// directory whose lease went stale belongs to a dead instance, and one live instance adopts it.
//
// Invariants:
// - its holder touches its lease every eighth of DURABLE_LEASE_STALE_MS, and exits (status 1) if
//   it finds its lease taken or gone: another
//   instance judged it dead and is adopting its directory, so it must stop writing there. Only a
//   missing file (ENOENT) or another's token means that: a read error (EIO, ESTALE on EFS, EMFILE)
//   is a failed renewal, logged and tried again at the next tick, three times before the fencing
//   below stops the instance;
// - fencing: the holder acknowledges only while its last renewal is younger than half the stale
//   time, and an adopter writes its own lease into the directory before it touches anything. So a
//   holder that was paused (SIGSTOP, a frozen VM) and resumes mid-adoption acknowledges nothing
//   more, and exits at its next renewal: what it acknowledged before was fsynced while its lease
//   was fresh, at least half the stale time before the adopter could judge it dead and read it;
//   and a holder whose last renewal is older than half the stale time never renews again (it
//   exits), so it cannot revive a lease an adopter is about to take over;
// - `adopt.lock.<n>` in a dead instance's directory names its one adopter, the highest n holding;
//   each is created with O_EXCL, and one whose adopter's own lease is stale is taken over by
//   creating n + 1, so two survivors never adopt the same directory at once (known gap: one that
//   read generation n, then stalled while another took n + 1, adopted, failed and released it,
//   can take n + 1 beside a third that took 0 meanwhile; adoption takes seconds, the stall would too);
// - another instance's lease is judged on this instance's own clock (LeaseWatch): stale once what
//   it reads as (its mtime, ctime and content, read through an open file, which NFS revalidates at open)
//   has not changed for DURABLE_LEASE_STALE_MS of this process's monotonic time. Another host's
//   clock is never compared with ours, so no skew, of any size or sign, makes a renewing instance
//   look dead; a directory first seen is watched for a whole stale time before it can be judged;
// - a lease or lock that cannot be read never makes its holder dead: the judgement throws and is
//   made again at the next scan. Only a lock that reads as torn (its writer crashed mid-write) is
//   judged by its directory's lease, and only a missing lease by the directory's own mtime and ctime;
// - no symlink is followed (src/disk/): an instance directory, lease or adopt lock that is one is
//   refused (ELOOP), so it is never judged dead or adopted, and this instance never starts in one.
import { randomUUID } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import { type Disk, disk as realDisk } from '../disk/disk.js';

const LEASE_FILE = 'lease';
const ADOPT_LOCK = 'adopt.lock';

interface LeaseContent {
  readonly instanceId: string;
  readonly host: string;
  readonly pid: number;
  readonly token: string;
}

export class Lease {
  readonly #timer: NodeJS.Timeout;
  /** performance.now() of the last renewal: a step of the wall clock neither ends nor prolongs freshness. */
  #renewedAt = performance.now();
  /** The mtime of the last renewal, or of the lease's writing (just before): each renewal is a whole second past it at least (see #renew). */
  #stamped = Date.now();

  private constructor(
    private readonly file: string,
    private readonly token: string,
    private readonly staleMs: number,
    log: Logger,
    private readonly disk: Disk,
  ) {
    this.#timer = setInterval(() => {
      if (!this.fresh()) {
        // Paused (or unable to renew) for half the stale time: an adopter may be reading this
        // directory already. Renewing now could revive the lease under it; stop instead.
        log.fatal({ file, staleMs }, "lease not renewed for half of DURABLE_LEASE_STALE_MS: another instance may be adopting this directory; exiting (a restart replays this instance's WAL)");
        process.exit(1);
      }
      this.#renew().catch((err: unknown) => {
        if (!(err instanceof LeaseLost)) return log.warn({ file, err }, 'lease could not be renewed; trying again');
        log.fatal({ file }, "lease lost: the lease file is gone or another instance's; this instance was judged dead and its directory is being adopted; exiting");
        process.exit(1);
      });
    }, Math.max(125, Math.floor(staleMs / 8))).unref();
  }

  /** Writes this instance's lease in `dir` (its own directory under the root) and keeps it fresh. */
  static async take(dir: string, instanceId: string, staleMs: number, log: Logger, disk: Disk = realDisk): Promise<Lease> {
    await disk.fs.mkdir(dir, { recursive: true });
    await disk.directory(dir); // a symlink planted under the shared root is not this instance's directory
    const token = await writeLease(dir, instanceId, disk);
    return new Lease(path.join(dir, LEASE_FILE), token, staleMs, log, disk);
  }

  /** Renewed within half the stale time: this instance may acknowledge (see fencing above). */
  fresh(): boolean {
    return performance.now() - this.#renewedAt < this.staleMs / 2;
  }

  /** Removes the lease (a clean stop): what is left in the directory is adopted once the lease would be stale. */
  async release(): Promise<void> {
    clearInterval(this.#timer);
    // Unreadable: left in place; it goes stale, and what the directory holds is adopted then.
    const lease = await readLease(this.file, this.disk).catch(() => undefined);
    // No directory fsync: a lease back after a power loss is as stale as none.
    if (lease?.token === this.token) await this.disk.fs.unlink(this.file).catch(ifMissing(undefined));
  }

  async #renew(): Promise<void> {
    const lease = await readLease(this.file, this.disk);
    if (lease === undefined || lease.token !== this.token) throw new LeaseLost();
    const now = Date.now();
    // Watchers see a renewal as a change of mtime (LeaseWatch): each is set a second past the last
    // at least, so that one-second mtimes (some NFS servers) or a clock stepped back or frozen
    // still change it. Nobody reads it as a time.
    this.#stamped = Math.max(now, this.#stamped + 1000);
    await this.disk.touch(this.file, new Date(this.#stamped));
    this.#renewedAt = performance.now();
  }
}

/**
 * Writes a new lease for `instanceId` in `dir` at once and durably (temp file, fsync, rename,
 * directory fsync); returns its token. Also an adopter's first step in a dead instance's
 * directory, so that the holder, should it be alive after all (paused, then resumed), finds its
 * lease taken and exits: the fencing rests on it, so it must outlive a crash of the file server.
 */
export async function writeLease(dir: string, instanceId: string, disk: Disk = realDisk): Promise<string> {
  const content: LeaseContent = { instanceId, host: os.hostname(), pid: process.pid, token: randomUUID() };
  await disk.writeAtomic(dir, LEASE_FILE, `${JSON.stringify(content)}\n`, { temp: `${LEASE_FILE}.${content.token}`, mode: 0o644 });
  return content.token;
}

class LeaseLost extends Error {}

/** A lease or adopt lock: undefined if there is none; throws if it cannot be read, or reads as torn (SyntaxError). */
async function readLease(file: string, disk: Disk): Promise<LeaseContent | undefined> {
  const text = await disk.readText(file).catch(ifMissing(undefined));
  return text === undefined ? undefined : (JSON.parse(text) as LeaseContent);
}

/** For a rejection: `value` when the file is not there, the error otherwise. */
const ifMissing =
  <T>(value: T) =>
  (err: unknown): T => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return value;
    throw err;
  };

/** Other instances' leases, judged on this process's own clock (see the invariants above). */
export class LeaseWatch {
  readonly #seen = new Map<string, { mark: string; since: number }>();

  /** `now`: this process's monotonic milliseconds (a test's clock may run faster). */
  constructor(
    private readonly staleMs: number,
    private readonly now: () => number = () => performance.now(),
    private readonly disk: Disk = realDisk,
  ) {}

  /** Forgets every directory but those of `listed` (the root's listing): the ones gone or adopted meanwhile. */
  retain(listed: ReadonlySet<string>): void {
    for (const dir of this.#seen.keys()) if (!listed.has(dir)) this.#seen.delete(dir);
  }

  /**
   * The lease of the instance directory `dir` (or, with none, the directory itself) has read the
   * same for longer than the stale time, by our clock; false if the directory is gone. Throws if
   * the lease or directory cannot be read.
   */
  async stale(dir: string): Promise<boolean> {
    const mark = await this.#mark(dir);
    const now = this.now();
    const seen = this.#seen.get(dir);
    if (mark === undefined) this.#seen.delete(dir);
    else if (seen === undefined || seen.mark !== mark) this.#seen.set(dir, { mark, since: now });
    else return now - seen.since > this.staleMs;
    return false;
  }

  /**
   * What the lease reads as: its mtime (as its holder's clock set it: compared, never aged), its
   * ctime (set by the file server at every renewal, whatever time the holder asked for) and content.
   */
  async #mark(dir: string): Promise<string | undefined> {
    let handle;
    try {
      handle = await this.disk.open(path.join(dir, LEASE_FILE), fsConstants.O_RDONLY);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      const stat = await this.disk.lstat(dir).catch(ifMissing(undefined));
      return stat === undefined ? undefined : `no lease; directory ${stat.mtimeMs} ${stat.ctimeMs}`;
    }
    try {
      const stat = await handle.stat();
      return `${stat.mtimeMs} ${stat.ctimeMs} ${await handle.readFile('utf8')}`;
    } finally {
      await handle.close();
    }
  }
}

export interface AdoptLock {
  /** Still this adopter's: no other survivor took the lock over meanwhile (it removes older generations). */
  held(): Promise<boolean>;
  release(): Promise<void>;
}

const ADOPT_LOCK_NAME = /^adopt\.lock\.(\d+)$/;

/**
 * Takes `dir`'s adopt lock for `instanceId`, or undefined when a live instance holds it (as
 * `watch` judges it). The lock is the file `adopt.lock.<n>` with the highest n; taking one over
 * from a dead holder creates n + 1 with O_EXCL, so of two survivors racing for it exactly one
 * succeeds, whatever the order.
 */
export async function takeAdoptLock(root: string, dir: string, instanceId: string, watch: LeaseWatch, disk: Disk = realDisk): Promise<AdoptLock | undefined> {
  const names = await disk.fs.readdir(dir).catch(ifMissing(undefined));
  if (names === undefined) return undefined; // adopted and removed by another survivor meanwhile
  const generations = names.map((name) => ADOPT_LOCK_NAME.exec(name)?.[1]).filter((n) => n !== undefined).map(Number);
  const top = generations.length === 0 ? -1 : Math.max(...generations);
  if (top >= 0) {
    // A lock that reads as torn is one being written (or cut short by a crash): judged by the
    // directory's own lease. One that cannot be read throws: its holder may well be alive.
    const holder = (await readLease(path.join(dir, `${ADOPT_LOCK}.${top}`), disk).catch((err: unknown) => {
      if (err instanceof SyntaxError) return undefined;
      throw err;
    })) as { instanceId?: string } | undefined;
    const holderDir = holder?.instanceId === undefined ? undefined : path.join(root, holder.instanceId);
    // One naming this instance is one it failed to release (or took before a restart under the
    // same id): an instance adopts one directory at a time, never this one now.
    const ours = holder?.instanceId === instanceId;
    const gone = ours || (holderDir === undefined ? await watch.stale(dir) : (await watch.stale(holderDir)) || !(await exists(holderDir, disk)));
    if (!gone) return undefined;
  }
  const file = path.join(dir, `${ADOPT_LOCK}.${top + 1}`);
  try {
    await disk.writeNew(file, `${JSON.stringify({ instanceId })}\n`, 0o644);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return undefined; // another survivor was first
    throw err;
  }
  // No directory fsync for the removals: the highest generation holds, so an older one back after a power loss changes nothing.
  const remove = (name: string) => disk.fs.unlink(path.join(dir, name)).catch(ifMissing(undefined));
  for (const n of generations) await remove(`${ADOPT_LOCK}.${n}`);
  return { held: () => exists(file, disk), release: () => remove(`${ADOPT_LOCK}.${top + 1}`) };
}

/**
 * Throws if `file` cannot be looked at, or is a symlink: an error is not an absence (a WAL skipped
 * as absent would be removed with its directory).
 */
export async function exists(file: string, disk: Disk = realDisk): Promise<boolean> {
  return disk.lstat(file).then(() => true, ifMissing(false));
}
