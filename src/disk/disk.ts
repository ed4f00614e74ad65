// The disk layer under the DLQ and the WAL: every file-system call they make goes through a Disk,
// which never follows a symlink, rides out a passing shortage of file descriptors, and makes a
// change durable by fsyncing the directory it changed.
//
// Invariants:
// - no symlink is followed below a directory the caller names: files are opened O_NOFOLLOW, entries
//   looked at with lstat, and a symlink where a file or subdirectory should be is refused (ELOOP).
//   The directories a caller is configured with (DLQ_DIR, WAL_DIR, DURABLE_ROOT) are taken as given,
//   an operator's symlink included;
// - a file is created with O_EXCL, so nothing is replaced and no dangling link is written through;
// - writeAtomic, remove and moveInto return once the directory entry they changed is fsynced; when
//   only that last fsync fails they throw DirNotSynced (the change is made, but may not survive a
//   power loss), so a caller can tell it from a change that was not made;
// - every call goes to `fs` (node:fs/promises unless a test hands in another, say one that forgets
//   what was not fsynced when it plays a crash).
import { constants as fsConstants, type Stats } from 'node:fs';
import nodeFs, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DirNotSynced, NotRegular, SymlinkRefused, TooLarge } from './errors.js';

export { DirNotSynced, NotRegular, SymlinkRefused, TooLarge };

/** The calls a Disk makes; node:fs/promises fits it. */
export type DiskFs = Pick<typeof nodeFs, 'open' | 'rename' | 'unlink' | 'lstat' | 'mkdir' | 'lutimes' | 'readdir'>;

// EMFILE/ENFILE pass as soon as some other descriptor closes (a request ends, an upload
// finishes), so a few tries over about 1.5 s turn most of them into a delay instead of a loss.
const FD_RETRY_DELAYS_MS = [50, 100, 200, 400, 800];

function isFdShortage(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'EMFILE' || code === 'ENFILE';
}

// O_NONBLOCK so a FIFO never blocks the open.
const READ_FLAGS = fsConstants.O_RDONLY | fsConstants.O_NONBLOCK;
const CREATE_FLAGS = fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY;
// A directory is opened only to fsync it; O_DIRECTORY so that a file swapped in for it fails.
const DIR_FLAGS = fsConstants.O_RDONLY | fsConstants.O_DIRECTORY;

export class Disk {
  constructor(readonly fs: DiskFs = nodeFs) {}

  /** Opens a file, never through a symlink (ELOOP), retried with backoff while file descriptors are short. */
  async open(file: string, flags: number, mode?: number): Promise<FileHandle> {
    return this.#retrying(() => this.fs.open(file, flags | fsConstants.O_NOFOLLOW, mode));
  }

  /**
   * The first `limit` bytes of a regular file (all of it when `limit` is undefined), with its size.
   * Throws NotRegular for anything else, without ever blocking on it, and TooLarge when reading it
   * whole would take more than `maxSize` bytes.
   */
  async readRegular(file: string, limit?: (head: Buffer) => number, maxSize = Number.POSITIVE_INFINITY): Promise<{ data: Buffer; size: number }> {
    let handle: FileHandle;
    try {
      handle = await this.open(file, READ_FLAGS);
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

  /** A small file read whole as UTF-8 (a lock, a lease), never through a symlink. */
  async readText(file: string): Promise<string> {
    const handle = await this.open(file, fsConstants.O_RDONLY);
    try {
      return await handle.readFile('utf8');
    } finally {
      await handle.close();
    }
  }

  /** Writes `data` to a new file (which must not exist) and fsyncs it; its directory entry is not synced. */
  async writeNew(file: string, data: Buffer | string, mode = 0o640): Promise<void> {
    const handle = await this.open(file, CREATE_FLAGS, mode);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  /**
   * `dir/name` holds `data` whole or not at all, durably: written to `dir/temp` (which must not
   * exist), fsynced, renamed over `name`, and the directory fsynced. The temp file is removed when
   * a step before the rename fails; DirNotSynced when only the last fsync did.
   */
  async writeAtomic(dir: string, name: string, data: Buffer | string, { temp, mode }: { temp: string; mode?: number }): Promise<void> {
    const tempFile = path.join(dir, temp);
    try {
      await this.writeNew(tempFile, data, mode);
      await this.fs.rename(tempFile, path.join(dir, name));
    } catch (err) {
      await this.fs.unlink(tempFile).catch(() => {});
      throw err;
    }
    await this.#synced(dir);
  }

  /** A creation, rename or removal is durable only once the directory entry is. */
  async syncDir(dir: string): Promise<void> {
    const handle = await this.#retrying(() => this.fs.open(dir, DIR_FLAGS));
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  /** Removes `dir/name` (a symlink itself, never its target), then fsyncs `dir`; a missing entry is no error. */
  async remove(dir: string, name: string): Promise<void> {
    try {
      await this.fs.unlink(path.join(dir, name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    await this.#synced(dir);
  }

  /**
   * Moves `dir/name` into the subdirectory `dir/sub`, which must be a directory and not a symlink
   * (else SymlinkRefused or ENOTDIR, and nothing moves), then fsyncs both directories. Checked just
   * before the rename: a process that can swap the entry in between can write `dir` anyway.
   */
  async moveInto(dir: string, name: string, sub: string): Promise<void> {
    const target = path.join(dir, sub);
    await this.directory(target);
    await this.fs.rename(path.join(dir, name), path.join(target, name));
    await this.#synced(target);
    await this.#synced(dir);
  }

  /** Makes the directory `dir/name` unless it is there; throws if that entry is a symlink or not a directory. */
  async subdir(dir: string, name: string): Promise<string> {
    const made = path.join(dir, name);
    await this.fs.mkdir(made).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
    await this.directory(made);
    return made;
  }

  /** Checks that `dir` is a directory and not a symlink to one. */
  async directory(dir: string): Promise<void> {
    const stat = await this.lstat(dir);
    if (!stat.isDirectory()) throw Object.assign(new Error(`${dir} is not a directory`), { code: 'ENOTDIR' });
  }

  /** lstat, refusing a symlink (SymlinkRefused): what a caller looks at is the entry itself, never a target. */
  async lstat(file: string): Promise<Stats> {
    const stat = await this.fs.lstat(file);
    if (stat.isSymbolicLink()) throw new SymlinkRefused(`${file} is a symbolic link`);
    return stat;
  }

  /** Sets a file's mtime (and atime) to `time`, on the entry itself: a symlink's own times, never its target's. */
  async touch(file: string, time: Date): Promise<void> {
    await this.fs.lutimes(file, time, time);
  }

  async #synced(dir: string): Promise<void> {
    try {
      await this.syncDir(dir);
    } catch (err) {
      throw new DirNotSynced(dir, err as Error);
    }
  }

  async #retrying<T>(call: () => Promise<T>): Promise<T> {
    for (const delay of FD_RETRY_DELAYS_MS) {
      try {
        return await call();
      } catch (err) {
        if (!isFdShortage(err)) throw err;
        await sleep(delay);
      }
    }
    return call();
  }
}

/** The real disk: node:fs/promises. */
export const disk = new Disk();
