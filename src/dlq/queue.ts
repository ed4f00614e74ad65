// What the DLQ holds, in memory: the queued files in spill order (oldest first) and their totals.
import type { DlqMeta } from './file.js';

export interface QueuedFile {
  readonly name: string;
  readonly bytes: number;
  readonly meta: DlqMeta;
  /** Being re-uploaded: not to be evicted or expired meanwhile. */
  busy: boolean;
  /** Failed its check and could not be moved aside: skipped. */
  corrupt: boolean;
  /** The re-uploader's backoff for this file: not before this time (ms), after so many failures. */
  retryAt: number;
  failures: number;
  /** Order of indexing (set by FileQueue.add): tells a sweep which files its listing can see. */
  seq: number;
}

export function queuedFile(name: string, bytes: number, meta: DlqMeta): QueuedFile {
  return { name, bytes, meta, busy: false, corrupt: false, retryAt: 0, failures: 0, seq: 0 };
}

export class FileQueue {
  /** In spill order, oldest first (callers add in that order). */
  readonly #files = new Map<string, QueuedFile>();
  #bytes = 0;
  #events = 0;
  #seq = 0;

  /** The `seq` of the file indexed last. */
  get lastSeq(): number {
    return this.#seq;
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

  list(): QueuedFile[] {
    return [...this.#files.values()];
  }

  /** The oldest file free to re-upload at `now`: not busy, not corrupt, not backing off. */
  oldest(now: number): QueuedFile | undefined {
    for (const file of this.#files.values()) if (!file.busy && !file.corrupt && file.retryAt <= now) return file;
    return undefined;
  }

  add(file: QueuedFile): void {
    const previous = this.#files.get(file.name);
    if (previous !== undefined) this.remove(previous);
    file.seq = ++this.#seq;
    this.#files.set(file.name, file);
    this.#bytes += file.bytes;
    this.#events += file.meta.events;
  }

  has(file: QueuedFile): boolean {
    return this.#files.get(file.name) === file;
  }

  /** False when the file was not (or no longer) queued. */
  remove(file: QueuedFile): boolean {
    if (this.#files.get(file.name) !== file) return false;
    this.#files.delete(file.name);
    this.#bytes -= file.bytes;
    this.#events -= file.meta.events;
    return true;
  }
}
