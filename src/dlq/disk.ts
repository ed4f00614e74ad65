// File I/O for the DLQ that neither hangs nor gives up on a passing shortage of file descriptors.
import { constants as fsConstants } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

/** An entry that is not a regular file (a directory, FIFO, socket, device or symlink). */
export class NotRegular extends Error {
  readonly code = 'ENOTREG';
}

/** A file larger than the caller will read whole. */
export class TooLarge extends Error {
  constructor(readonly size: number) {
    super(`${size} bytes`);
  }
}

// EMFILE/ENFILE pass as soon as some other descriptor closes (a request ends, an upload
// finishes), so a few tries over about 1.5 s turn most of them into a delay instead of a loss.
const FD_RETRY_DELAYS_MS = [50, 100, 200, 400, 800];

function isFdShortage(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'EMFILE' || code === 'ENFILE';
}

/** fs.open, retried with backoff while the process or system is out of file descriptors. */
async function openRetrying(file: string, flags: number, mode?: number): Promise<FileHandle> {
  for (const delay of FD_RETRY_DELAYS_MS) {
    try {
      return await fs.open(file, flags, mode);
    } catch (err) {
      if (!isFdShortage(err)) throw err;
      await sleep(delay);
    }
  }
  return fs.open(file, flags, mode);
}

// O_NONBLOCK so a FIFO never blocks the open; O_NOFOLLOW so a symlink is refused (ELOOP), not followed.
const READ_FLAGS = fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | fsConstants.O_NOFOLLOW;

/**
 * The first `limit` bytes of a regular file (all of it when `limit` is undefined), with its size.
 * Throws NotRegular for anything else, without ever blocking on it, and TooLarge when reading it
 * whole would take more than `maxSize` bytes.
 */
export async function readRegular(file: string, limit?: (head: Buffer) => number, maxSize = Number.POSITIVE_INFINITY): Promise<{ data: Buffer; size: number }> {
  let handle: FileHandle;
  try {
    handle = await openRetrying(file, READ_FLAGS);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') throw new NotRegular('a symbolic link');
    throw err;
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new NotRegular(stat.isDirectory() ? 'a directory' : 'not a regular file');
    if (limit === undefined && stat.size > maxSize) throw new TooLarge(stat.size);
    if (limit === undefined) return { data: await handle.readFile(), size: stat.size };
    const fixed = Buffer.alloc(Math.min(stat.size, 12));
    await handle.read(fixed, 0, fixed.length, 0);
    const data = Buffer.alloc(Math.min(stat.size, limit(fixed)));
    await handle.read(data, 0, data.length, 0);
    return { data, size: stat.size };
  } finally {
    await handle.close();
  }
}

/** Writes `data` to a new file `temp` (which must not exist) and fsyncs it. */
export async function writeNewFile(temp: string, data: Buffer): Promise<void> {
  const handle = await openRetrying(temp, fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY, 0o640);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A rename is durable only once the directory entry is. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await openRetrying(dir, fsConstants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
