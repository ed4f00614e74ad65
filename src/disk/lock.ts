// One process owns a directory (DLQ_DIR, WAL_DIR): the lock file `<dir>/.lock`, held for the owner's life.
//
// The file is created with O_EXCL and holds JSON {pid, host, instanceId, startedAt, token, bootId,
// pidStart, pidNs}; the holder touches it every LOCK_HEARTBEAT_MS. A lock on this host is stale
// when the kernel booted since (boot id), or its pid is not alive, or that pid is now another
// process (its start time, field 22 of /proc/<pid>/stat, differs: pids are reused). A pid from
// another pid namespace (a container beside us, or an earlier run of our own container) names a
// different process here, so it is judged by the heartbeat alone. Without /proc only the alive
// check remains. A holder on another host cannot be checked from here, so it is never taken over:
// an operator who knows that host is gone removes the file (docs/dlq.md, "Exclusivity"). A lock
// file that is a symlink is never read through: it reads as no holder, so it goes stale. Known
// gap: two processes starting in the same instant beside one stale lock can both take it over (the
// second removes the first's new file before creating its own).
import { randomUUID } from 'node:crypto';
import { closeSync, constants as fsConstants, openSync, readFileSync, readlinkSync, unlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type Disk, disk as realDisk } from './disk.js';

export const LOCK_FILE = '.lock';

export interface LockHolder {
  readonly pid: number;
  readonly host: string;
  readonly instanceId: string | undefined;
  readonly startedAt: string;
  readonly token: string;
  /** /proc/sys/kernel/random/boot_id, when there is a /proc. */
  readonly bootId?: string;
  /** The holder's start time in clock ticks after boot (/proc/<pid>/stat field 22). */
  readonly pidStart?: number;
  /** The holder's pid namespace (readlink /proc/self/ns/pid), in which its pid means it. */
  readonly pidNs?: string;
}

// The holder refreshes the lock's mtime this often; a lock from another pid namespace that has not
// been refreshed for LOCK_STALE_MS is taken over (its holder died: say an OOM-killed container).
const LOCK_HEARTBEAT_MS = 10_000;
export const LOCK_STALE_MS = 60_000;

/** A /proc fact, or undefined where there is no /proc (or it cannot be read). */
function proc<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch {
    return undefined;
  }
}

const bootId = () => proc(() => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim());
const pidNs = () => proc(() => readlinkSync('/proc/self/ns/pid'));

/** Field 22 of /proc/<pid>/stat; the fields are counted after the command name, which may hold spaces. */
export function pidStart(pid: number | 'self'): number | undefined {
  const stat = proc(() => readFileSync(`/proc/${pid}/stat`, 'utf8'));
  const start = stat?.slice(stat.lastIndexOf(')') + 2).split(' ')[22 - 3];
  return start === undefined ? undefined : Number(start);
}

/** Who holds a lock, for a refusal: "pid 12 on host h (instance i) since <time>". */
export function describeHolder(holder: LockHolder | undefined): string {
  if (holder === undefined) return 'a process that is still writing the lock file';
  return `pid ${holder.pid} on host ${holder.host}${holder.instanceId === undefined ? '' : ` (instance ${holder.instanceId})`} since ${holder.startedAt}`;
}

/** The directory is another live process's; each owner (the DLQ, the WAL) words the refusal for its setting. */
export class DirLocked extends Error {
  override name = 'DirLocked';

  constructor(
    readonly dir: string,
    readonly holder: LockHolder | undefined,
  ) {
    super(`${dir} is in use by ${describeHolder(holder)}`);
  }
}

export interface DirLock {
  readonly holder: LockHolder;
  /** Removes the lock file if it is still ours (also done on process exit). */
  release(): void;
}

/**
 * Takes the lock on `dir` or throws DirLocked naming the holder; other errors (no directory) pass
 * through. No directory fsync follows the lock's creation or removal: a crash ends the holder
 * anyway, and a lock lost with it, or left by it, is what the staleness rules above are for.
 */
export async function acquireLock(dir: string, instanceId: string | undefined, disk: Disk = realDisk): Promise<DirLock> {
  const file = path.join(dir, LOCK_FILE);
  const me: LockHolder = { pid: process.pid, host: os.hostname(), instanceId, startedAt: new Date().toISOString(), token: randomUUID(), bootId: bootId(), pidStart: pidStart('self'), pidNs: pidNs() };
  // Two rounds: the second follows the removal of a stale lock.
  for (let round = 0; round < 2; round++) {
    try {
      await disk.writeNew(file, `${JSON.stringify(me)}\n`, 0o644);
      return held(file, me, disk);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = await readHolder(file, disk);
    if (!(await isStale(file, holder, disk))) throw new DirLocked(dir, holder);
    await disk.fs.unlink(file).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err; // gone already: the next round creates it
    });
  }
  throw new DirLocked(dir, await readHolder(file, disk));
}

function held(file: string, me: LockHolder, disk: Disk): DirLock {
  // The lock goes with the process however it ends, short of SIGKILL (then it is stale).
  const onExit = () => release(file, me.token);
  process.once('exit', onExit);
  const heartbeat = setInterval(() => {
    disk.touch(file, new Date()).catch(() => {}); // gone or replaced: nothing of ours to refresh
  }, LOCK_HEARTBEAT_MS).unref();
  return {
    holder: me,
    release: () => {
      clearInterval(heartbeat);
      process.removeListener('exit', onExit);
      onExit();
    },
  };
}

async function readHolder(file: string, disk: Disk): Promise<LockHolder | undefined> {
  try {
    const holder = JSON.parse(await disk.readText(file)) as LockHolder | null;
    return typeof holder === 'object' && holder !== null && Number.isSafeInteger(holder.pid) && typeof holder.host === 'string' ? holder : undefined;
  } catch {
    return undefined;
  }
}

// A lock file with no readable holder is one being written right now, or one a crash cut short:
// give a writer a moment before calling it stale.
const UNREADABLE_LOCK_STALE_MS = 10_000;

async function isStale(file: string, holder: LockHolder | undefined, disk: Disk): Promise<boolean> {
  const age = async () => {
    const stat = await disk.lstat(file).catch(() => undefined);
    return stat === undefined ? Number.POSITIVE_INFINITY : Date.now() - stat.mtimeMs;
  };
  if (holder === undefined) return (await age()) > UNREADABLE_LOCK_STALE_MS;
  if (holder.host !== os.hostname()) return false;
  const boot = bootId();
  if (holder.bootId !== undefined && boot !== undefined && holder.bootId !== boot) return true;
  const ns = pidNs();
  if (holder.pidNs !== undefined && ns !== undefined && holder.pidNs !== ns) return (await age()) > LOCK_STALE_MS;
  try {
    process.kill(holder.pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
  // Alive; but pids are reused: is it still the process that wrote the lock?
  const start = holder.pidStart === undefined ? undefined : pidStart(holder.pid);
  return start !== undefined && start !== holder.pidStart;
}

// Synchronous, so that it also runs in an 'exit' handler; so it goes straight to node:fs, past the
// Disk: nothing durable rests on it (a lock left behind is stale, see above).
function release(file: string, token: string): void {
  try {
    const fd = openSync(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
    let holder: LockHolder;
    try {
      holder = JSON.parse(readFileSync(fd, 'utf8')) as LockHolder;
    } finally {
      closeSync(fd);
    }
    if (holder.token === token) unlinkSync(file);
  } catch {
    // Gone or replaced: nothing of ours to remove.
  }
}
