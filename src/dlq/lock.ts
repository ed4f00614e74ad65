// One process owns a DLQ_DIR: the lock file `DLQ_DIR/.lock`, held for the owner's life.
//
// The file is created with O_EXCL and holds JSON {pid, host, instanceId, startedAt, token}. A lock
// left by a dead process is taken over: its host is this host and its pid is not alive here (or is
// our own pid: a restarted container reuses pid numbers, and we hold nothing yet). A holder on
// another host cannot be checked from here, so it is never taken over: an operator who knows that
// host is gone removes the file (docs/dlq.md, "Exclusivity"). Known gap: two processes starting in
// the same instant beside one stale lock can both take it over (the second removes the first's new
// file before creating its own); a restart of one task on its own volume never does that.
import { randomUUID } from 'node:crypto';
import { constants as fsConstants, readFileSync, unlinkSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export const LOCK_FILE = '.lock';

export interface LockHolder {
  readonly pid: number;
  readonly host: string;
  readonly instanceId: string | undefined;
  readonly startedAt: string;
  readonly token: string;
}

export class DlqLocked extends Error {
  override name = 'DlqLocked';

  constructor(
    readonly dir: string,
    readonly holder: LockHolder | undefined,
  ) {
    const who = holder === undefined ? 'a process that is still writing the lock file' : `pid ${holder.pid} on host ${holder.host}${holder.instanceId === undefined ? '' : ` (instance ${holder.instanceId})`} since ${holder.startedAt}`;
    super(`DLQ_DIR ${dir} is in use by ${who}: one process per DLQ directory. Stop that process or give this one its own DLQ_DIR; if that host is gone for good, remove ${path.join(dir, LOCK_FILE)}`);
  }
}

export interface DlqLock {
  readonly holder: LockHolder;
  /** Removes the lock file if it is still ours (also done on process exit). */
  release(): void;
}

/** Takes the lock on `dir` or throws DlqLocked naming the holder; other errors (no directory) pass through. */
export async function acquireLock(dir: string, instanceId: string | undefined): Promise<DlqLock> {
  const file = path.join(dir, LOCK_FILE);
  const me: LockHolder = { pid: process.pid, host: os.hostname(), instanceId, startedAt: new Date().toISOString(), token: randomUUID() };
  // Two rounds: the second follows the removal of a stale lock.
  for (let round = 0; round < 2; round++) {
    try {
      const handle = await fs.open(file, fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY, 0o644);
      try {
        await handle.writeFile(`${JSON.stringify(me)}\n`);
        await handle.sync();
      } finally {
        await handle.close();
      }
      // The lock goes with the process however it ends, short of SIGKILL (then it is stale).
      const onExit = () => release(file, me.token);
      process.once('exit', onExit);
      return {
        holder: me,
        release: () => {
          process.removeListener('exit', onExit);
          onExit();
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = await readHolder(file);
    if (!(await isStale(file, holder))) throw new DlqLocked(dir, holder);
    await fs.rm(file, { force: true });
  }
  throw new DlqLocked(dir, await readHolder(file));
}

async function readHolder(file: string): Promise<LockHolder | undefined> {
  try {
    const holder = JSON.parse(await fs.readFile(file, 'utf8')) as LockHolder;
    return Number.isSafeInteger(holder.pid) && typeof holder.host === 'string' ? holder : undefined;
  } catch {
    return undefined;
  }
}

// A lock file with no readable holder is one being written right now, or one a crash cut short:
// give a writer a moment before calling it stale.
const UNREADABLE_LOCK_STALE_MS = 10_000;

async function isStale(file: string, holder: LockHolder | undefined): Promise<boolean> {
  if (holder === undefined) {
    const stat = await fs.stat(file).catch(() => undefined);
    return stat === undefined || Date.now() - stat.mtimeMs > UNREADABLE_LOCK_STALE_MS;
  }
  if (holder.host !== os.hostname()) return false;
  if (holder.pid === process.pid) return true;
  try {
    process.kill(holder.pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

function release(file: string, token: string): void {
  try {
    const holder = JSON.parse(readFileSync(file, 'utf8')) as LockHolder;
    if (holder.token === token) unlinkSync(file);
  } catch {
    // Gone or replaced: nothing of ours to remove.
  }
}
