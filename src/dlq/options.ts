// What a DlqStore is opened with, and what it is given to spill.
import type { Disk } from '../disk/disk.js';

export interface DlqOptions {
  readonly dir: string;
  readonly maxBytes: number;
  readonly maxFiles: number;
  /**
   * What a full DLQ does with a new batch: `evict` the oldest files to make room (ACK_LEVEL=memory),
   * or `refuse` it (disk, s3: every file holds acknowledged events; the caller keeps the batch).
   */
  readonly whenFull: 'evict' | 'refuse';
  /** Files older than this are deleted; undefined: never. */
  readonly ttlSeconds: number | undefined;
  readonly now: () => number;
  /**
   * The server and `dlq drain` take the directory's lock and repair at start (remove temp
   * leftovers, move bad files aside); `dlq stats|list`, which run beside a server, only read.
   */
  readonly repair: boolean;
  /** S3_PREFIX: only keys under it are re-uploaded. */
  readonly prefix: string;
  /** Recorded in the lock file, to name the holder to a second process. */
  readonly instanceId: string;
  /** Every file-system call goes through it; the real disk unless a test plays a crash. */
  readonly disk?: Disk;
}

export interface BatchToSave {
  readonly id: string;
  readonly key: string;
  readonly events: number;
  readonly firstReceivedAt: number;
  readonly lastReceivedAt: number;
  /** Never to replace an object at its key (see DlqMeta.ifAbsent). */
  readonly ifAbsent?: boolean;
}
