// A DLQ file back to S3 at its original key, and a drain of every file: the one re-upload that the
// idle-time re-uploader (./reupload.ts, per file, with its own scheduling and backoff), the adoption
// of a dead instance's DLQ (src/wal/adopt.ts) and `dlq drain` (./command.ts) share.
//
// - Not live unless told (every caller leaves it so): a file S3 refuses must not read as S3 failing
//   (s3_put_failing_seconds pages), since the files and S3's answers to them are not live traffic.
// - A file is deleted only once S3 has it; every other outcome keeps it, to be tried again later.
// - The loop goes oldest first and skips a file whose PUT failed for good; it stops only when told
//   to (the signal), or when S3 looks down: that many files in a row failed with errors another
//   attempt could fix (timeouts, 5xx, refused connections), so the rest would only wait them out.
import type { Logger } from 'pino';
import type { DlqMetrics } from '../metrics/dlq.js';
import { httpStatus, isRetryable, UploadAborted } from '../upload/errors.js';
import type { S3Uploader } from '../upload/s3.js';
import type { DlqMeta } from './file.js';
import type { OverwriteGuard } from './guard.js';
import type { DlqStore, QueuedFile } from './store.js';

/** What became of one file. */
export type Drained =
  /** In S3 and deleted (`already`: it was there, so not PUT again). */
  | { readonly result: 'stored'; readonly key: string; readonly events: number; readonly already: boolean }
  /** Not read: gone, or set aside or skipped as corrupt (the store has logged and counted it). */
  | { readonly result: 'gone' }
  /** Could not be read now (EACCES, EIO): kept. */
  | { readonly result: 'unreadable'; readonly error: Error }
  /** S3 refused it, or attempts ran out: kept. */
  | { readonly result: 'failed'; readonly key: string; readonly error: Error }
  /** The guard refused it (a foreign key, or another object at its key): kept. */
  | { readonly result: 'kept'; readonly key: string; readonly reason: string }
  /** Cut by the signal: kept. */
  | { readonly result: 'aborted' };

export interface DrainOptions {
  readonly metrics: DlqMetrics;
  readonly log: Logger;
  /** Stops the drain and aborts the PUT in progress (its file is kept); drainFile wants an UploadAborted reason. */
  readonly signal?: AbortSignal;
  /** Put only where no other object is (`dlq drain`); without it a file is PUT to its key as it is. */
  readonly guard?: OverwriteGuard;
  /** S3Uploader.put's `live`: false (the default) for the DLQ, so that its failures do not page. */
  readonly live?: boolean;
}

/** Reads a queued file, PUTs it to its key, deletes it once stored; counts and logs a success. Never rejects for the file's or S3's sake. */
export async function drainFile(store: DlqStore, file: QueuedFile, uploader: S3Uploader, options: DrainOptions): Promise<Drained> {
  let object;
  try {
    object = await store.read(file);
  } catch (err) {
    return { result: 'unreadable', error: err as Error };
  }
  if (object === undefined) return { result: 'gone' };
  const { key, events } = object.meta;
  const ifAbsent = object.meta.ifAbsent === true;
  // A conditional PUT never overwrites: the guard's checks, made so that nothing is, are not needed.
  const verdict = (ifAbsent ? undefined : await options.guard?.check(file.name, object, options.signal)) ?? { action: 'put' };
  if (verdict.action === 'keep') return { result: 'kept', key, reason: verdict.reason };
  let already = verdict.action === 'stored';
  if (verdict.action === 'put') {
    const put = await putFile(object, uploader, options, verdict.unseen);
    if (put !== 'stored' && put !== 'already') return put;
    already = put === 'already';
  }
  // False when another process took the file meanwhile: its events are counted there, not here.
  if (await store.delete(file, 'reuploaded')) options.metrics.eventsReuploaded.inc(events);
  options.log.info({ key, events, file: file.name, already }, `DLQ → RAW success: ${key} events=${events}`);
  return { result: 'stored', key, events, already };
}

/** The PUT of a file's object: stored, found there already (a 412 to a conditional PUT of a batch replayed short), or why not. */
async function putFile(object: { readonly meta: DlqMeta; readonly body: Buffer }, uploader: S3Uploader, options: DrainOptions, unseen: string | undefined): Promise<'stored' | 'already' | Drained> {
  const { key, events } = object.meta;
  const ifAbsent = object.meta.ifAbsent === true;
  try {
    await uploader.put({ key, body: object.body, events }, options.signal, { live: options.live ?? false, ifAbsent: ifAbsent || options.guard !== undefined });
    return 'stored';
  } catch (err) {
    if (options.signal?.aborted) return { result: 'aborted' };
    // A batch replayed short: the 412 says its complete object, PUT before a crash, is there.
    if (ifAbsent && httpStatus(err) === 412) return 'already';
    const refused = options.guard?.refusal(err, unseen);
    return refused === undefined ? { result: 'failed', key, error: err as Error } : { result: 'kept', key, reason: refused };
  }
}

/** Files by outcome (a file gone or set aside counts in none), and the events stored. */
export interface DrainSummary {
  readonly stored: number;
  readonly events: number;
  readonly unreadable: number;
  readonly failed: number;
  readonly kept: number;
  /** Why the drain ended before the last file, if it did. */
  readonly stopped: string | undefined;
}

// Files in a row that failed with errors another attempt could fix: S3 is down or unreachable.
const DOWN_AFTER = 3;

/**
 * Every file of the store, oldest first, each once: stored ones deleted, the rest kept and skipped.
 * `onFile` hears of each outcome (the command prints it); failures are logged here.
 */
export async function drain(store: DlqStore, uploader: S3Uploader, options: DrainOptions & { readonly onFile?: (file: QueuedFile, drained: Drained) => void }): Promise<DrainSummary> {
  const stop = uploadSignal(options.signal);
  try {
    return await drainAll(store, uploader, { ...options, signal: stop.signal });
  } finally {
    stop.release();
  }
}

async function drainAll(store: DlqStore, uploader: S3Uploader, options: DrainOptions & { readonly onFile?: (file: QueuedFile, drained: Drained) => void }): Promise<DrainSummary> {
  const count = { stored: 0, events: 0, unreadable: 0, failed: 0, kept: 0 };
  let down = 0;
  for (const file of store.list()) {
    if (options.signal?.aborted) return { ...count, stopped: 'stopping' };
    if (file.busy || file.corrupt) continue;
    file.busy = true;
    const drained = await drainFile(store, file, uploader, options).finally(() => (file.busy = false));
    options.onFile?.(file, drained);
    if (drained.result === 'aborted') return { ...count, stopped: 'stopping' };
    logSkipped(options.log, file, drained);
    if (drained.result === 'stored') count.events += drained.events;
    if (drained.result !== 'gone') count[drained.result]++;
    down = drained.result === 'failed' && isRetryable(drained.error) ? down + 1 : 0;
    if (down === DOWN_AFTER) return { ...count, stopped: `${DOWN_AFTER} files in a row failed with errors a later attempt could fix: S3 looks down or unreachable` };
  }
  return { ...count, stopped: undefined };
}

/**
 * The caller's signal with an UploadAborted reason, which S3Uploader counts as an abort (not an S3
 * error) whatever the caller aborted with; `release` unhooks it from the caller's signal.
 */
function uploadSignal(signal: AbortSignal | undefined): { signal: AbortSignal | undefined; release: () => void } {
  if (signal === undefined) return { signal, release: () => {} };
  const controller = new AbortController();
  const abort = () => controller.abort(signal.reason instanceof UploadAborted ? signal.reason : new UploadAborted('stopping'));
  if (signal.aborted) abort();
  else signal.addEventListener('abort', abort, { once: true });
  return { signal: controller.signal, release: () => signal.removeEventListener('abort', abort) };
}

function logSkipped(log: Logger, file: QueuedFile, drained: Drained): void {
  if (drained.result === 'unreadable') log.warn({ file: file.name, code: (drained.error as NodeJS.ErrnoException).code, err: drained.error }, "DLQ file could not be read, skipped, the next goes ahead; check the volume and the file's owner and mode");
  else if (drained.result === 'failed') log.warn({ file: file.name, key: drained.key, err: drained.error }, 'DLQ re-upload failed; file kept, the next goes ahead');
  else if (drained.result === 'kept') log.warn({ file: file.name, key: drained.key, reason: drained.reason }, 'DLQ file kept, not uploaded: its key is not one this server makes, or another object is there');
}
