// The start-up scan of DLQ_DIR and the quarantine: whatever the directory holds, start-up goes on.
//
// Rules (docs/dlq.md, "Start-up scan"): only regular files named `*.jsonl.gz` or `*.jsonl.zst` whose header reads
// and whose key lies under S3_PREFIX are queued. Temp leftovers (`.tmp-*` files and symlinks) are
// removed. A file that fails its check, cannot be read, is larger than DLQ_MAX_BYTES, or names a
// key outside S3_PREFIX is moved to `corrupt/`, only while that is a directory and not a symlink;
// anything that is not a regular file is left where it is. Each is logged and counted; none stops
// the server, and no error on one entry stops the scan (or drops the lock). Nothing is ever
// followed through a symlink (src/disk/) or opened blocking.
import type { Dirent } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { DirNotSynced, type Disk, NotRegular } from '../disk/disk.js';
import type { DlqMetrics, DropReason, RejectReason } from '../metrics/dlq.js';
import { acquireLock, type DlqLock } from './lock.js';
import { CorruptFile, type DlqMeta, decodeMeta, headerBytes, isQueuedName } from './file.js';

export const TEMP_PREFIX = '.tmp-';
const CORRUPT_DIR = 'corrupt';

export interface ScanContext {
  readonly disk: Disk;
  readonly dir: string;
  readonly prefix: string;
  /** Remove temp leftovers and move bad files aside (the lock holder); else only read and report. */
  readonly repair: boolean;
  /** DLQ_MAX_BYTES: a larger file can never fit the queue; it is moved aside unread. */
  readonly maxBytes: number;
  readonly metrics: DlqMetrics;
  /** Counts events lost (metric and the store's own tally). */
  readonly dropped: (reason: DropReason, events: number) => void;
  readonly log: Logger;
}

export interface FoundFile {
  readonly name: string;
  readonly bytes: number;
  readonly meta: DlqMeta;
}

/** Why a file with a readable header must not be uploaded; undefined when its key is fine. */
export function keyProblem(key: string, prefix: string): string | undefined {
  if (!key.startsWith(`${prefix}/`)) return `its key ${JSON.stringify(key)} is not under S3_PREFIX "${prefix}/"`;
  if (key.split('/').some((part) => part === '..' || part === '.' || part === '')) return `its key ${JSON.stringify(key)} has an empty, "." or ".." segment`;
  return undefined;
}

/**
 * The server's (and `dlq drain`'s) way in: makes DLQ_DIR, takes its lock (throws DlqLocked),
 * makes corrupt/, then scans. Read-only callers only scan.
 */
export async function openDir(ctx: ScanContext, instanceId: string | undefined): Promise<{ lock: DlqLock | undefined; found: FoundFile[] }> {
  let lock: DlqLock | undefined;
  if (ctx.repair) {
    await ctx.disk.fs.mkdir(ctx.dir, { recursive: true });
    lock = await acquireLock(ctx.dir, instanceId, ctx.disk);
    await prepareQuarantine(ctx);
  }
  try {
    return { lock, found: await scanDir(ctx) };
  } catch (err) {
    lock?.release();
    throw err;
  }
}

/** Lists DLQ_DIR and reads each queued file's header, oldest spill first; never throws for an entry. */
async function scanDir(ctx: ScanContext): Promise<FoundFile[]> {
  const entries = await ctx.disk.fs.readdir(ctx.dir, { withFileTypes: true });
  const found: FoundFile[] = [];
  for (const entry of entries) {
    try {
      const file = await scanEntry(ctx, entry);
      if (file !== undefined) found.push(file);
    } catch (err) {
      // A bug or a surprise on one entry is that entry's problem: the rest of the queue still counts.
      await setAside(ctx, entry.name, 'unreadable', err as Error);
    }
  }
  return found.sort((a, b) => a.meta.spilledAt - b.meta.spilledAt || (a.name < b.name ? -1 : 1));
}

async function scanEntry(ctx: ScanContext, entry: Dirent): Promise<FoundFile | undefined> {
  const name = entry.name;
  if (name.startsWith(TEMP_PREFIX)) {
    if (!ctx.repair) return undefined;
    // Only this server makes temp files, always regular: a directory of that name is someone else's.
    if (!entry.isFile() && !entry.isSymbolicLink()) {
      reject(ctx, name, kind(entry));
      return undefined;
    }
    await ctx.disk.remove(ctx.dir, name).catch((err: Error) => {
      // A failed fsync only: gone, though perhaps back after a power loss, to be removed at the next start.
      if (!(err instanceof DirNotSynced)) ctx.log.warn({ file: name, err }, 'DLQ temp leftover could not be removed; remove it by hand');
    });
    return undefined;
  }
  if (!isQueuedName(name)) return undefined;
  if (!entry.isFile()) {
    reject(ctx, name, kind(entry));
    return undefined;
  }
  return readQueued(ctx, name);
}

async function readQueued(ctx: ScanContext, name: string): Promise<FoundFile | undefined> {
  let head: { data: Buffer; size: number };
  try {
    head = await ctx.disk.readRegular(path.join(ctx.dir, name), headerBytes);
  } catch (err) {
    if (err instanceof NotRegular) reject(ctx, name, err.message);
    else if ((err as NodeJS.ErrnoException).code !== 'ENOENT') await setAside(ctx, name, 'unreadable', err as Error);
    return undefined;
  }
  if (head.size > ctx.maxBytes) {
    // Never indexed: its size alone would evict good files, and it is never read whole.
    await setAside(ctx, name, 'too_large', `${head.size} bytes is more than DLQ_MAX_BYTES (${ctx.maxBytes})`, eventsIn(head.data));
    return undefined;
  }
  try {
    const { meta } = decodeMeta(head.data);
    const problem = keyProblem(meta.key, ctx.prefix);
    if (problem !== undefined) {
      await setAside(ctx, name, 'bad_key', problem, meta.events);
      return undefined;
    }
    return { name, bytes: head.size, meta };
  } catch (err) {
    if (!(err instanceof CorruptFile)) throw err;
    await setAside(ctx, name, 'corrupt', err);
    return undefined;
  }
}

/** The event count in a file's header, if it has a readable one. */
function eventsIn(head: Buffer): number | undefined {
  try {
    return decodeMeta(head).meta.events;
  } catch {
    return undefined;
  }
}

export type AsideReason = Exclude<RejectReason, 'not_regular'> | 'corrupt';

/** What an operator does about a file set aside, by reason: the log line's `todo`. */
const TODO: Record<AsideReason, string> = {
  corrupt: 'inspect it with zcat',
  unreadable: "fix the file's owner, mode or volume and move it back into DLQ_DIR to re-upload it",
  bad_key: 'check where the file came from (its key is outside S3_PREFIX)',
  too_large: 'check where the file came from, or raise DLQ_MAX_BYTES and move it back',
};

/**
 * Counts and logs a file that must not be uploaded (`problem`: what is wrong with it, or the error
 * met reading it), and moves it to corrupt/ when repairing;
 * true if it left DLQ_DIR. Never throws: when the move fails the file stays and is skipped.
 * `events` (known when its header was read) are counted as dropped once the file has left.
 */
export async function setAside(ctx: ScanContext, name: string, why: AsideReason, problem: string | Error, events?: number): Promise<boolean> {
  if (why === 'corrupt') ctx.metrics.filesCorrupt.inc();
  else ctx.metrics.filesRejected.inc({ reason: why });
  const fields = { file: name, reason: why, ...(typeof problem === 'string' ? { detail: problem } : { err: problem }), todo: TODO[why] };
  if (!ctx.repair) {
    ctx.log.error(fields, 'DLQ file not uploaded, skipped');
    return false;
  }
  const movedTo = path.join(ctx.dir, CORRUPT_DIR);
  try {
    // Into corrupt/ only while it is a directory of DLQ_DIR's own: through a symlink the file would
    // leave for any directory on the volume (on a shared root, another instance's).
    await ctx.disk.moveInto(ctx.dir, name, CORRUPT_DIR);
  } catch (err) {
    if (err instanceof DirNotSynced) {
      ctx.log.warn({ file: name, err }, 'DLQ directory fsync failed after moving a file to corrupt/: a power loss may bring it back; check the volume');
    } else {
      // `err` is the failed move here; what is wrong with the file goes as text.
      ctx.log.error({ ...fields, detail: typeof problem === 'string' ? problem : String(problem), err }, 'DLQ file not uploaded, skipped: it could not be moved to corrupt/');
      return false;
    }
  }
  // Its events left the queue without reaching S3: lost unless an operator acts.
  if (events !== undefined) ctx.dropped('quarantined', events);
  ctx.log.error({ ...fields, movedTo, events }, 'DLQ file moved aside to corrupt/, never uploaded');
  return true;
}

/** An entry that is not a regular file: left in place (it is not ours to move), counted, logged. */
export function reject(ctx: ScanContext, name: string, detail: string): void {
  ctx.metrics.filesRejected.inc({ reason: 'not_regular' });
  ctx.log.error({ file: name, kind: detail }, 'DLQ entry not a regular file, skipped; remove it by hand');
}

function kind(entry: Dirent): string {
  return entry.isDirectory() ? 'a directory' : entry.isSymbolicLink() ? 'a symbolic link' : 'a FIFO, socket or device';
}

/**
 * Makes corrupt/; when that fails (a file or a symlink holds the name), bad files stay in place,
 * skipped (each move checks again, so a symlink put there later is refused too).
 */
async function prepareQuarantine(ctx: ScanContext): Promise<void> {
  await ctx.disk.subdir(ctx.dir, CORRUPT_DIR).catch((err: Error) => {
    ctx.log.error({ dir: ctx.dir, err }, 'DLQ corrupt/ directory unusable: bad files stay in DLQ_DIR, skipped; make DLQ_DIR/corrupt a directory (not a symbolic link)');
  });
}
