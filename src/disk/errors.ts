// What the disk layer (./disk.ts) throws besides the file system's own errors.

/** An entry that is not a regular file (a directory, FIFO, socket, device or symlink). */
export class NotRegular extends Error {
  override name = 'NotRegular';
  readonly code = 'ENOTREG';
}

/** A symlink where the caller expects a file or a directory of its own: never followed. */
export class SymlinkRefused extends Error {
  override name = 'SymlinkRefused';
  readonly code = 'ELOOP';
}

/** A file larger than the caller will read whole. */
export class TooLarge extends Error {
  override name = 'TooLarge';

  constructor(readonly size: number) {
    super(`${size} bytes`);
  }
}

/** The change is made (the entry is renamed, created or gone) but the directory's fsync failed. */
export class DirNotSynced extends Error {
  override name = 'DirNotSynced';
  readonly code: string | undefined;

  constructor(readonly dir: string, cause: Error) {
    super(`directory fsync failed: ${cause.message}`, { cause });
    this.code = (cause as NodeJS.ErrnoException).code;
  }
}
