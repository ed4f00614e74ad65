// The dead-letter queue on disk: durable spill, an index of what is queued, expiry and
// eviction. The file format is in ./file.ts, the start-up scan and quarantine in ./scan.ts, the
// directory lock in ./lock.ts; every file-system call goes through the disk layer (src/disk/).
//
// Invariants:
// - a file under its final name (`<batchId>.jsonl.gz`) is complete: it was written as
//   `.tmp-<name>`, fsynced, renamed, and the directory fsynced;
// - a file is removed (re-uploaded, expired, evicted) durably: DLQ_DIR is fsynced after the unlink;
// - names come from batch ids the server made, never from client input;
// - only the lock holder (the server, or `dlq drain`) writes, repairs, re-uploads and evicts;
// - expiry and eviction delete whole files, oldest spill first, never one being re-uploaded;
// - refusing when full (ACK_LEVEL=disk, s3: whenFull 'refuse'), nothing is evicted and nothing
//   save() fails to write is counted dropped: the caller still holds those events (in its WAL,
//   or as a client's refused request), and the DLQ is `full` until a file leaves;
// - an event leaves the DLQ by re-upload, or is counted in dlq_events_dropped_total once its
//   file is gone from DLQ_DIR (a file that stays would be re-uploaded after a restart);
// - save(), delete() and sweep() never reject: a caller may be in the middle of an upload.
import path from 'node:path';
import type { Logger } from 'pino';
import { DirNotSynced, disk as realDisk, NotRegular, TooLarge } from '../disk/disk.js';
import type { DlqMetrics, DropReason } from '../metrics/dlq.js';
import { CorruptFile, type DlqMeta, decodeMeta, fileName, spillFile, verifiedObject } from './file.js';
import { type DlqLock, DlqLocked } from './lock.js';
import type { BatchToSave, DlqOptions } from './options.js';
import { FileQueue, type QueuedFile, queuedFile } from './queue.js';
import { type AsideReason, keyProblem, openDir, reject, type ScanContext, setAside, TEMP_PREFIX } from './scan.js';
import { DropTally } from './tally.js';

export { DlqLocked, type QueuedFile };
export type { BatchToSave, DlqOptions } from './options.js';

export class DlqStore {
  readonly #queue = new FileQueue();
  #lock: DlqLock | undefined;
  #unusable: string | undefined;
  // Files being removed for a drop still count in the gauges, not against capacity: concurrent
  // evictions must not take more files than the excess.
  readonly #removing = { files: 0, bytes: 0 };
  private readonly scan: ScanContext;
  readonly #dropped: DropTally;
  // The size of the last batch refused for DLQ_MAX_BYTES: `full` until it would fit.
  #refusedBytes: number | undefined;

  private constructor(
    private readonly options: DlqOptions,
    private readonly metrics: DlqMetrics,
    private readonly log: Logger,
  ) {
    this.#dropped = new DropTally(metrics);
    const { dir, prefix, repair, maxBytes, disk = realDisk } = options;
    this.scan = { disk, dir, prefix, repair, maxBytes, metrics, log, dropped: (reason, events) => this.#dropped.add(reason, events) };
  }

  /** Takes the lock (repair mode; throws DlqLocked), scans the directory, applies TTL and capacity. */
  static async open(options: DlqOptions, metrics: DlqMetrics, log: Logger): Promise<DlqStore> {
    const store = new DlqStore(options, metrics, log);
    let found;
    try {
      ({ lock: store.#lock, found } = await openDir(store.scan, options.instanceId));
    } catch (err) {
      if (err instanceof DlqLocked) {
        log.fatal({ dir: options.dir, holder: err.holder, err }, 'DLQ_DIR is in use by another process: one process per DLQ directory');
        throw err;
      }
      // Serve anyway: each batch that then fails to upload is counted as dropped, with a log line.
      log.error({ dir: options.dir, code: (err as NodeJS.ErrnoException).code, err }, 'DLQ directory unusable; check DLQ_DIR and its volume');
      store.#unusable = (err as Error).message;
      return store;
    }
    for (const file of found) store.#queue.add(queuedFile(file.name, file.bytes, file.meta));
    if (options.repair) await store.sweep();
    // Only an owner (server, drain) will re-upload them; stats and list merely read.
    if (options.repair && found.length > 0) log.info({ files: store.files, events: store.events, bytes: store.bytes }, 'DLQ: found files from an earlier run; they will be re-uploaded');
    return store;
  }

  /** Releases the directory's lock. */
  close(): void {
    this.#lock?.release();
    this.#lock = undefined;
  }

  /** Why DLQ_DIR could not be opened or listed at start (then the store is empty, without the lock). */
  get unusable(): string | undefined { return this.#unusable; }
  /** Events this store dropped in this process, all reasons: for the shutdown summary. */
  get droppedEvents(): number { return this.#dropped.total; }
  /** The same by reason (capacity covers evicted and too large to write). */
  get droppedEventsByReason(): Readonly<Record<DropReason, number>> { return this.#dropped.byReason(); }
  get files(): number { return this.#queue.files; }
  get bytes(): number { return this.#queue.bytes; }
  get events(): number { return this.#queue.events; }
  /** Spill time of the oldest file, or undefined when empty. */
  get oldestSpilledAt(): number | undefined { return this.#queue.oldestSpilledAt; }
  /** Oldest first. */
  list(): QueuedFile[] { return this.#queue.list(); }
  /** The oldest file free to re-upload now: not busy, not corrupt, not backing off. */
  oldest(now = this.options.now()): QueuedFile | undefined { return this.#queue.oldest(now); }

  /**
   * Whether a new batch would be refused now (whenFull 'refuse'): DLQ_MAX_FILES files are queued,
   * or the last batch refused for DLQ_MAX_BYTES would still not fit. Always false when evicting.
   */
  get full(): boolean {
    if (this.options.whenFull === 'evict') return false;
    return this.files >= this.options.maxFiles || (this.#refusedBytes !== undefined && this.bytes + this.#refusedBytes > this.options.maxBytes);
  }

  /**
   * Writes a batch durably (true), or resolves false: refused (full), or the write failed (logged;
   * its events counted dropped unless refusing when full, when the caller keeps them).
   */
  async save(batch: BatchToSave, object: Buffer): Promise<boolean> {
    const name = fileName(batch.id, batch.key);
    const refuses = this.options.whenFull === 'refuse';
    let file: QueuedFile;
    try {
      const meta = { key: batch.key, events: batch.events, firstReceivedAt: batch.firstReceivedAt, lastReceivedAt: batch.lastReceivedAt, spilledAt: this.options.now() };
      const data = await spillFile(object, batch.ifAbsent === true ? { ...meta, ifAbsent: true } : meta);
      if (refuses && (this.files + 1 > this.options.maxFiles || this.bytes + data.length > this.options.maxBytes)) {
        // A batch larger than the whole DLQ never fits: it must not keep the DLQ full for good.
        if (data.length <= this.options.maxBytes) this.#refusedBytes = data.length;
        this.metrics.batchesRefused.inc();
        this.log.warn({ file: name, events: batch.events, bytes: data.length, files: this.files, queuedBytes: this.bytes }, 'DLQ full: batch not written; new events are refused until S3 takes queued files back');
        return false;
      }
      if (data.length > this.options.maxBytes) {
        // Writing it would only evict everything else and then itself.
        this.#dropped.add('capacity', batch.events);
        this.log.warn({ file: name, events: batch.events, bytes: data.length, maxBytes: this.options.maxBytes }, `DLQ capacity → not written=${name}; the batch alone is more than DLQ_MAX_BYTES; raise DLQ_MAX_BYTES or lower BATCH_MAX_BYTES`);
        return false;
      }
      file = queuedFile(name, data.length, decodeMeta(data).meta);
      await this.scan.disk.writeAtomic(this.options.dir, name, data, { temp: `${TEMP_PREFIX}${name}` }).catch((err: unknown) => {
        // Only the directory's fsync failed: the file is in place under its name.
        if (!(err instanceof DirNotSynced)) throw err;
        this.log.warn({ file: name, err }, 'DLQ directory fsync failed after writing a file: the file is in place but may not survive a power loss; check the volume');
      });
    } catch (err) {
      this.metrics.writeFailures.inc();
      if (!refuses) this.#dropped.add('write_failed', batch.events);
      this.log.error({ key: batch.key, events: batch.events, code: (err as NodeJS.ErrnoException).code, err }, `local DLQ save failed: ${(err as Error).message}`);
      return false;
    }
    this.metrics.eventsSpilled.inc(batch.events);
    this.#refusedBytes = undefined;
    this.#queue.add(file);
    // The newest file is the last to be evicted: only when every older one is busy (re-uploading)
    // or cannot be removed. Then it is not kept, and the caller must not say it is (at
    // ACK_LEVEL=s3 the client would hold a receipt for events already gone).
    return this.#enforceCapacity(file);
  }

  /**
   * The checked object of a queued file; undefined when it is gone, failed its check or names
   * a key outside S3_PREFIX (each set aside). Throws when it cannot be read now (EACCES, EIO).
   */
  async read(file: QueuedFile): Promise<{ meta: DlqMeta; body: Buffer } | undefined> {
    let data: Buffer;
    try {
      ({ data } = await this.scan.disk.readRegular(path.join(this.options.dir, file.name), undefined, this.options.maxBytes));
    } catch (err) {
      if (err instanceof TooLarge) {
        // Replaced by something bigger since it was indexed: never read whole.
        await this.#setAside(file, 'too_large', `${err.size} bytes is more than DLQ_MAX_BYTES (${this.options.maxBytes})`);
        return undefined;
      }
      if (err instanceof NotRegular) {
        reject(this.scan, file.name, err.message);
        this.#queue.remove(file);
      } else if ((err as NodeJS.ErrnoException).code === 'ENOENT') this.#taken(file);
      else throw err;
      return undefined;
    }
    try {
      const object = await verifiedObject(data);
      const problem = keyProblem(object.meta.key, this.scan.prefix);
      if (problem === undefined) return object;
      await this.#setAside(file, 'bad_key', problem);
    } catch (err) {
      if (!(err instanceof CorruptFile)) throw err;
      await this.#setAside(file, 'corrupt', err);
    }
    return undefined;
  }

  /**
   * Removes a file; for any reason but a re-upload its events count as dropped once it is gone.
   * Never rejects; false when the file stays (not queued, busy, or the removal failed).
   */
  async delete(file: QueuedFile, reason: 'reuploaded' | 'expired' | 'evicted'): Promise<boolean> {
    if (reason === 'reuploaded') {
      // Out of the index before the first await, so concurrent callers never take it twice.
      if (!this.#queue.remove(file)) return false;
      await this.#remove(file.name).catch((err: Error) => {
        this.log.error({ file: file.name, err }, 'DLQ file could not be removed after its re-upload: it is in S3 already; a restart would PUT the same bytes to the same key again; remove it by hand');
      });
      return true;
    }
    // Busy while removed, so no other caller (or the re-uploader) takes it meanwhile; it stays
    // indexed, and its events uncounted, until it is really gone.
    if (file.busy || !this.#queue.has(file)) return false;
    file.busy = true;
    this.#removing.files++;
    this.#removing.bytes += file.bytes;
    try {
      await this.#remove(file.name);
    } catch (err) {
      this.log.error({ file: file.name, reason, err }, 'DLQ file could not be removed: kept and tried again at the next sweep; remove it by hand');
      return false;
    } finally {
      file.busy = false;
      this.#removing.files--;
      this.#removing.bytes -= file.bytes;
    }
    this.#queue.remove(file);
    this.#dropped.add(reason === 'expired' ? 'ttl' : 'capacity', file.meta.events);
    if (reason === 'expired') {
      this.metrics.filesExpired.inc();
      this.log.warn({ file: file.name, events: file.meta.events, ttlSeconds: this.options.ttlSeconds }, `DLQ TTL → removed=${file.name}`);
    } else {
      this.log.warn({ file: file.name, events: file.meta.events, files: this.files, bytes: this.bytes }, `DLQ capacity → removed=${file.name}`);
    }
    return true;
  }

  /** Deletes expired files and forgets files another process removed. Never rejects. */
  async sweep(): Promise<void> {
    // Only a file indexed before the listing began can be missing from it because it is gone:
    // one a save() renames and indexes meanwhile may be missing and must stay.
    const listedAfter = this.#queue.lastSeq;
    let present: Set<string>;
    try {
      present = new Set(await this.scan.disk.fs.readdir(this.options.dir));
    } catch (err) {
      this.log.error({ dir: this.options.dir, err }, 'DLQ directory unreadable at the sweep; check DLQ_DIR and its volume');
      return;
    }
    const { ttlSeconds } = this.options;
    const expiredBefore = ttlSeconds === undefined ? Number.NEGATIVE_INFINITY : this.options.now() - ttlSeconds * 1000;
    for (const file of this.list()) {
      if (!present.has(file.name)) {
        if (file.seq <= listedAfter) this.#taken(file);
      }
      else if (!file.busy && file.meta.spilledAt < expiredBefore) await this.delete(file, 'expired');
    }
    await this.#enforceCapacity();
  }

  /** Evicts the oldest files until the queue fits (never when refusing); false if `kept` (a file just saved) was among them. */
  async #enforceCapacity(kept?: QueuedFile): Promise<boolean> {
    if (this.options.whenFull === 'refuse') return true;
    const stuck = new Set<QueuedFile>(); // removal failed: logged, tried again at the next sweep
    const over = () => this.files - this.#removing.files > this.options.maxFiles || this.bytes - this.#removing.bytes > this.options.maxBytes;
    while (over()) {
      const victim = this.list().find((f) => !f.busy && !stuck.has(f));
      if (victim === undefined) break;
      if (await this.delete(victim, 'evicted')) {
        if (victim === kept) return false;
      } else stuck.add(victim);
    }
    return true;
  }

  /**
   * A queued file is gone from the directory: another process (dlq drain) or a person removed it.
   * Counted apart, so that spilled = reuploaded + dropped + taken + current still holds.
   */
  #taken(file: QueuedFile): void {
    if (!this.#queue.remove(file)) return;
    this.metrics.eventsTaken.inc(file.meta.events);
    this.log.warn({ file: file.name, events: file.meta.events, key: file.meta.key }, 'DLQ file removed by another process: a dlq drain stored it, or it was deleted by hand. Only one process should own DLQ_DIR');
  }

  /**
   * Removes a file and fsyncs DLQ_DIR, since a drop is counted (and a re-upload done) once the file
   * is gone for good. Throws while the file stays; a failed fsync after it is gone is a warning.
   */
  async #remove(name: string): Promise<void> {
    await this.scan.disk.remove(this.options.dir, name).catch((err: unknown) => {
      if (!(err instanceof DirNotSynced)) throw err;
      this.log.warn({ file: name, err }, 'DLQ directory fsync failed after removing a file: a power loss may bring it back; check the volume');
    });
  }

  async #setAside(file: QueuedFile, why: AsideReason, problem: string | Error): Promise<void> {
    if (await setAside(this.scan, file.name, why, problem, file.meta.events)) this.#queue.remove(file);
    else file.corrupt = true;
  }
}
