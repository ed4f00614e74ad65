// One process owns a DLQ_DIR: the shared directory lock (src/disk/lock.ts, where its rules are),
// refused in DLQ_DIR's words.
import path from 'node:path';
import { type Disk, disk as realDisk } from '../disk/disk.js';
import { acquireLock as acquireDirLock, describeHolder, DirLocked, type DirLock, LOCK_FILE, type LockHolder } from '../disk/lock.js';

export { LOCK_FILE, type LockHolder };
export type DlqLock = DirLock;

export class DlqLocked extends Error {
  override name = 'DlqLocked';

  constructor(
    readonly dir: string,
    readonly holder: LockHolder | undefined,
  ) {
    super(`DLQ_DIR ${dir} is in use by ${describeHolder(holder)}: one process per DLQ directory. Stop that process or give this one its own DLQ_DIR; if that host is gone for good, remove ${path.join(dir, LOCK_FILE)}`);
  }
}

/** Takes the lock on `dir` or throws DlqLocked naming the holder; other errors (no directory) pass through. */
export async function acquireLock(dir: string, instanceId: string | undefined, disk: Disk = realDisk): Promise<DlqLock> {
  try {
    return await acquireDirLock(dir, instanceId, disk);
  } catch (err) {
    if (err instanceof DirLocked) throw new DlqLocked(dir, err.holder);
    throw err;
  }
}
