// The dead-letter queue on disk (SPEC §4): durable spill, an index of what is queued, expiry and
// eviction, the start-up scan. The file format is described in ./file.ts.
//
// Invariants:
// - a file under its final name (`<batchId>.jsonl.gz`) is complete: it was written as
//   `.tmp-<name>`, fsynced, renamed, and the directory fsynced;
// - names come from batch ids the server made, never from client input;
// - expiry and eviction delete whole files, oldest spill first, never one being re-uploaded;
// - an event leaves the DLQ by re-upload, or is counted in dlq_events_dropped_total.
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { DlqMetrics } from '../metrics/dlq.js';
import { CorruptFile, type DlqMeta, decodeMeta, encodeFile, verifiedObject } from './file.js';

export interface DlqOptions {
  readonly dir: string;
  readonly maxBytes: number;
  readonly maxFiles: number;
  readonly ttlSeconds: number;
  readonly now: () => number;
  /**
   * The server repairs at start (removes temp leftovers, moves corrupt files aside); the operator
   * command, which may run beside a live server, only reads and reports.
   */
  readonly repair: boolean;
}

export interface BatchToSave {
  readonly id: string;
  readonly key: string;
  readonly events: number;
  readonly firstReceivedAt: number;
  readonly lastReceivedAt: number;
}

export interface QueuedFile {
  readonly name: string;
  readonly bytes: number;
  readonly meta: DlqMeta;
  /** Being re-uploaded: not to be evicted or expired meanwhile. */
  busy: boolean;
  /** Failed its check and could not be moved aside (read-only mode): skipped. */
  corrupt: boolean;
}

const SUFFIX = '.jsonl.gz';
const TEMP_PREFIX = '.tmp-';
const CORRUPT_DIR = 'corrupt';

export class DlqStore {
  /** In spill order, oldest first. */
  readonly #files = new Map<string, QueuedFile>();
  #bytes = 0;
  #events = 0;

  private constructor(
    private readonly options: DlqOptions,
    private readonly metrics: DlqMetrics,
    private readonly log: Logger,
  ) {}

  /** Scans the directory (headers only), removes temp leftovers, sets corrupt files aside, applies TTL and capacity. */
  static async open(options: DlqOptions, metrics: DlqMetrics, log: Logger): Promise<DlqStore> {
    const store = new DlqStore(options, metrics, log);
    let names: string[];
    try {
      if (options.repair) await fs.mkdir(path.join(options.dir, CORRUPT_DIR), { recursive: true });
      names = await fs.readdir(options.dir);
    } catch (err) {
      // Serve anyway: each batch that then fails to upload is counted as dropped, with a log line.
      log.error({ dir: options.dir, code: (err as NodeJS.ErrnoException).code }, `DLQ directory unusable: ${(err as Error).message}`);
      return store;
    }
    const found: QueuedFile[] = [];
    for (const name of names) {
      if (name.startsWith(TEMP_PREFIX)) {
        if (options.repair) await fs.rm(path.join(options.dir, name), { force: true });
        continue;
      }
      if (!name.endsWith(SUFFIX)) continue;
      try {
        found.push(await store.#readHeader(name));
      } catch (err) {
        if (!(err instanceof CorruptFile)) throw err;
        await store.#setAside(name, err.message);
      }
    }
    found.sort((a, b) => a.meta.spilledAt - b.meta.spilledAt || (a.name < b.name ? -1 : 1));
    for (const file of found) store.#index(file);
    if (options.repair) await store.sweep();
    if (found.length > 0) log.info({ files: store.files, events: store.events, bytes: store.bytes }, 'DLQ: found files from an earlier run; they will be re-uploaded');
    return store;
  }

  get files(): number {
    return this.#files.size;
  }

  get bytes(): number {
    return this.#bytes;
  }

  get events(): number {
    return this.#events;
  }

  /** Spill time of the oldest file, or undefined when empty. */
  get oldestSpilledAt(): number | undefined {
    return this.#files.values().next().value?.meta.spilledAt;
  }

  /** Oldest first. */
  list(): QueuedFile[] {
    return [...this.#files.values()];
  }

  /** The oldest file free to re-upload. */
  oldest(): QueuedFile | undefined {
    for (const file of this.#files.values()) if (!file.busy && !file.corrupt) return file;
    return undefined;
  }

  /** Writes a batch durably (true); on failure logs, counts its events as dropped, and resolves false. */
  async save(batch: BatchToSave, gzip: Buffer): Promise<boolean> {
    const name = `${batch.id}${SUFFIX}`;
    const meta = { key: batch.key, events: batch.events, firstReceivedAt: batch.firstReceivedAt, lastReceivedAt: batch.lastReceivedAt, spilledAt: this.options.now() };
    const temp = path.join(this.options.dir, `${TEMP_PREFIX}${name}`);
    const data = encodeFile(gzip, meta);
    try {
      const handle = await fs.open(temp, fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY, 0o640);
      try {
        await handle.writeFile(data);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await fs.rename(temp, path.join(this.options.dir, name));
      await this.#syncDir();
    } catch (err) {
      await fs.rm(temp, { force: true }).catch(() => {});
      this.metrics.writeFailures.inc();
      this.metrics.eventsDropped.inc({ reason: 'write_failed' }, batch.events);
      this.log.error({ key: batch.key, events: batch.events, code: (err as NodeJS.ErrnoException).code }, `local DLQ save failed: ${(err as Error).message}`);
      return false;
    }
    this.metrics.eventsSpilled.inc(batch.events);
    this.#index({ name, bytes: data.length, meta: decodeMeta(data).meta, busy: false, corrupt: false });
    await this.#enforceCapacity();
    return true;
  }

  /** The checked gzip object of a queued file; undefined when it is gone or failed its check. */
  async read(file: QueuedFile): Promise<{ meta: DlqMeta; gzip: Buffer } | undefined> {
    let data: Buffer;
    try {
      data = await fs.readFile(path.join(this.options.dir, file.name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      this.#unindex(file); // another process (the dlq command) took it
      return undefined;
    }
    try {
      return await verifiedObject(data);
    } catch (err) {
      if (!(err instanceof CorruptFile)) throw err;
      if (await this.#setAside(file.name, err.message)) this.#unindex(file);
      else file.corrupt = true;
      return undefined;
    }
  }

  /** Removes a file; for any reason but a re-upload its events count as dropped. */
  async delete(file: QueuedFile, reason: 'reuploaded' | 'expired' | 'evicted'): Promise<void> {
    // Out of the index before the first await, so concurrent callers never take (and count) it twice.
    if (!this.#unindex(file)) return;
    await fs.rm(path.join(this.options.dir, file.name), { force: true });
    if (reason === 'reuploaded') return;
    this.metrics.eventsDropped.inc({ reason: reason === 'expired' ? 'ttl' : 'capacity' }, file.meta.events);
    if (reason === 'expired') {
      this.metrics.filesExpired.inc();
      this.log.warn({ file: file.name, events: file.meta.events, ttlSeconds: this.options.ttlSeconds }, `DLQ TTL → removed=${file.name}`);
    } else {
      this.log.warn({ file: file.name, events: file.meta.events, files: this.files, bytes: this.bytes }, `DLQ capacity → removed=${file.name}`);
    }
  }

  /** Deletes expired files and forgets files another process removed. */
  async sweep(): Promise<void> {
    const present = new Set(await fs.readdir(this.options.dir));
    const expiredBefore = this.options.now() - this.options.ttlSeconds * 1000;
    for (const file of this.list()) {
      if (!present.has(file.name)) this.#unindex(file);
      else if (!file.busy && file.meta.spilledAt < expiredBefore) await this.delete(file, 'expired');
    }
    await this.#enforceCapacity();
  }

  async #enforceCapacity(): Promise<void> {
    while (this.files > this.options.maxFiles || this.bytes > this.options.maxBytes) {
      const victim = this.list().find((f) => !f.busy);
      if (victim === undefined) return;
      await this.delete(victim, 'evicted');
    }
  }

  async #readHeader(name: string): Promise<QueuedFile> {
    const handle = await fs.open(path.join(this.options.dir, name), 'r');
    try {
      const { size } = await handle.stat();
      const fixed = Buffer.alloc(12);
      await handle.read(fixed, 0, 12, 0);
      const head = Buffer.alloc(Math.min(size, 12 + fixed.readUInt16LE(10)));
      await handle.read(head, 0, head.length, 0);
      return { name, bytes: size, meta: decodeMeta(head).meta, busy: false, corrupt: false };
    } finally {
      await handle.close();
    }
  }

  /** Counts and logs a corrupt file, and moves it to corrupt/ when repairing; true if moved. */
  async #setAside(name: string, reason: string): Promise<boolean> {
    this.metrics.filesCorrupt.inc();
    if (!this.options.repair) {
      this.log.error({ file: name, reason }, `DLQ file corrupt, skipped: ${name}`);
      return false;
    }
    await fs.rename(path.join(this.options.dir, name), path.join(this.options.dir, CORRUPT_DIR, name));
    this.log.error({ file: name, reason, movedTo: path.join(this.options.dir, CORRUPT_DIR) }, `DLQ file corrupt, moved aside: ${name}`);
    return true;
  }

  #index(file: QueuedFile): void {
    const previous = this.#files.get(file.name);
    if (previous !== undefined) this.#unindex(previous);
    this.#files.set(file.name, file);
    this.#bytes += file.bytes;
    this.#events += file.meta.events;
  }

  /** False when the file was not (or no longer) in the index. */
  #unindex(file: QueuedFile): boolean {
    if (this.#files.get(file.name) !== file) return false;
    this.#files.delete(file.name);
    this.#bytes -= file.bytes;
    this.#events -= file.meta.events;
    return true;
  }

  // A rename is durable only once the directory entry is.
  async #syncDir(): Promise<void> {
    const dir = await fs.open(this.options.dir, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
}
