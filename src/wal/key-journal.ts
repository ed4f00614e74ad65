// The key journal (ACK_LEVEL=disk): the Idempotency-Keys of acknowledged requests, kept for
// IDEMPOTENCY_WINDOW_SECONDS whatever becomes of the WAL segments that first held them, so that a
// retry after a segment's removal, a clean restart or a crash is still recognised
// (docs/api.md#idempotency-key).
//
// WAL_DIR/keys/
//   000000000003.keys      files numbered up, one written at a time, never appended to by a later run
//
// A line per key: the CRC-32 of the JSON text as 8 hex digits, a space, JSON {key, hash, bytes, at},
// a newline. A line that does not check out (a torn tail, damage) is skipped and logged, and so is
// a file that cannot be read (EIO, not a regular file): the start goes on without its keys.
//
// Invariants:
// - every key the WAL records is added here once its record is on disk (WriteAheadLog.appendEvents),
//   before the checkpoint that may remove its segment; lines are buffered and written in batches,
//   never fsynced one by one;
// - sync() (the WAL calls it before it removes a segment, and at close) returns once every key
//   added before it is written and fdatasynced, the file's name too: no key leaves the WAL before
//   it is durable here. Until then the WAL holds it: a crash loses nothing that a restart needs;
// - a file takes keys for a quarter of the window, or a quarter of IDEMPOTENCY_MAX_KEYS; it is
//   deleted once every key in it is past the window, or once the newer files hold
//   IDEMPOTENCY_MAX_KEYS keys (the table would forget its keys first: src/idempotency.ts);
// - a write that fails gives the journal up until a restart (logged once): keys then outlive a
//   restart only while their segment does; the WAL never waits on it.
import { constants as fsConstants } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import type { Logger } from 'pino';
import type { IdemKey } from '../channel.js';
import { type Disk, NotRegular, disk as realDisk } from '../disk/disk.js';

/** A key and when its request was received (./replay.ts's KeyAt: not imported, which would make a circle through ./log.ts). */
type KeyAt = IdemKey & { readonly at: number };

export const KEYS_DIR = 'keys';

const FILE_NAME = /^\d{12}\.keys$/;
const HEX8 = /^[0-9a-f]{8}$/;
const WRITE_FLAGS = fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY | fsConstants.O_APPEND;
/** Journal files are read this much at a time at start. */
const READ_CHUNK_BYTES = 1024 * 1024;
/** Buffered lines are written once this many bytes wait (about 600 keys), else at the next sync(). */
const WRITE_BYTES = 64 * 1024;
/** Files per window, and per IDEMPOTENCY_MAX_KEYS: what is on disk is at most a quarter more than needed. */
const FILES_PER_WINDOW = 4;

export interface KeyJournalOptions {
  readonly windowMs: number;
  readonly maxKeys: number;
  /** The wall clock in ms, as a key's `at` (Entry.receivedAt). */
  readonly now?: () => number;
  readonly disk?: Disk;
}

/** A journal file: its newest key's time and how many keys it holds. */
interface JournalFile {
  readonly name: string;
  maxAt: number;
  count: number;
}

function fileName(seq: number): string {
  return `${String(seq).padStart(12, '0')}.keys`;
}

function encodeLine({ key, hash, bytes, at }: KeyAt): string {
  const json = `{"key":${JSON.stringify(key)},"hash":${hash},"bytes":${bytes},"at":${at}}`;
  return `${zlib.crc32(json).toString(16).padStart(8, '0')} ${json}\n`;
}

/** A line's key, or undefined when the line does not check out. */
function decodeLine(line: string): KeyAt | undefined {
  const json = line.slice(9);
  // parseInt reads a prefix of hex digits: the checksum's 8 characters must all be.
  if (line[8] !== ' ' || !HEX8.test(line.slice(0, 8)) || zlib.crc32(json) !== parseInt(line.slice(0, 8), 16)) return undefined;
  try {
    const k = JSON.parse(json) as Partial<KeyAt>;
    if (typeof k.key !== 'string' || typeof k.hash !== 'number' || typeof k.bytes !== 'number' || typeof k.at !== 'number') return undefined;
    return { key: k.key, hash: k.hash, bytes: k.bytes, at: k.at };
  } catch {
    return undefined;
  }
}

export class KeyJournal {
  #pending: string[] = [];
  #pendingBytes = 0;
  #pendingMaxAt = 0;
  #pendingCount = 0;
  /** Closed files, oldest first. */
  readonly #files: JournalFile[];
  #current: (JournalFile & { handle: FileHandle; openedAt: number }) | undefined;
  /** Whether the current file has bytes, or a name, not yet fdatasynced. */
  #dirty = { data: false, name: false };
  #nextSeq: number;
  /** One file operation at a time, in order. */
  #chain: Promise<void> = Promise.resolve();
  #writeQueued = false;
  /** A write failed: nothing more is written (see the top). */
  #broken = false;
  #closed = false;
  readonly #now: () => number;
  readonly #disk: Disk;

  private constructor(
    private readonly dir: string,
    private readonly options: KeyJournalOptions,
    files: JournalFile[],
    nextSeq: number,
    private readonly log: Logger,
  ) {
    this.#files = files;
    this.#nextSeq = nextSeq;
    this.#now = options.now ?? Date.now;
    this.#disk = options.disk ?? realDisk;
  }

  /**
   * Opens WAL_DIR/keys (made if missing; never through a symlink: SymlinkRefused) and reads it. `keys`:
   * its keys and the WAL's (`walKeys`, from replay) within the window, once each, oldest first, at
   * most IDEMPOTENCY_MAX_KEYS; the WAL's that it lacked are added to it.
   */
  static async open(walDir: string, walKeys: readonly KeyAt[], options: KeyJournalOptions, log: Logger): Promise<{ journal: KeyJournal; keys: KeyAt[] }> {
    const disk = options.disk ?? realDisk;
    const dir = await disk.subdir(walDir, KEYS_DIR);
    await disk.syncDir(walDir); // `keys` itself, made by this start or an earlier one, survives a power loss
    const names = (await disk.fs.readdir(dir)).filter((name) => FILE_NAME.test(name)).sort();
    const files: JournalFile[] = [];
    const journalKeys: KeyAt[] = [];
    const chunk = Buffer.allocUnsafe(READ_CHUNK_BYTES);
    for (const name of names) {
      const before = journalKeys.length;
      try {
        await readFile(disk, path.join(dir, name), chunk, journalKeys, log);
      } catch (err) {
        // Left where it is (never deleted by this run), and read again at the next start.
        journalKeys.length = before;
        log.warn({ file: name, err }, 'key journal: a file could not be read; its Idempotency-Keys are not restored');
        continue;
      }
      let maxAt = 0;
      for (let i = before; i < journalKeys.length; i++) maxAt = Math.max(maxAt, journalKeys[i]!.at);
      files.push({ name, maxAt, count: journalKeys.length - before });
    }
    const journal = new KeyJournal(dir, options, files, names.length > 0 ? Number(names.at(-1)!.slice(0, 12)) + 1 : 0, log);
    await journal.#run(() => journal.#deleteOld());
    const now = journal.#now();
    const live = (k: KeyAt) => k.at + options.windowMs > now;
    // A key taken twice within the window (the table forgot it at IDEMPOTENCY_MAX_KEYS, then a retry came) is its latest.
    const latest = new Map<string, KeyAt>();
    const keep = (k: KeyAt) => {
      if (live(k) && (latest.get(k.key)?.at ?? -Infinity) <= k.at) latest.set(k.key, k);
    };
    for (const k of journalKeys) keep(k);
    for (const k of walKeys) {
      if (live(k) && latest.get(k.key)?.at !== k.at) journal.add(k);
      keep(k);
    }
    const keys = [...latest.values()].sort((a, b) => a.at - b.at).slice(-options.maxKeys);
    return { journal, keys };
  }

  /** A key the WAL has on disk: buffered, written with the next batch. */
  add(k: KeyAt): void {
    if (this.#broken || this.#closed) return;
    const line = encodeLine(k);
    this.#pending.push(line);
    this.#pendingBytes += line.length;
    this.#pendingCount++;
    if (k.at > this.#pendingMaxAt) this.#pendingMaxAt = k.at;
    if (this.#pendingBytes >= WRITE_BYTES && !this.#writeQueued) {
      this.#writeQueued = true;
      this.#run(() => this.#write()).catch(() => {}); // #run settles every failure itself: never taken
    }
  }

  /** Every key added so far written and fdatasynced (see the top); never rejects. */
  sync(): Promise<void> {
    return this.#run(async () => {
      await this.#write();
      if (this.#current !== undefined) await this.#syncCurrent(this.#current.handle);
    });
  }

  /** What the current file holds, and its name, made durable. */
  async #syncCurrent(handle: FileHandle): Promise<void> {
    if (this.#dirty.data) await handle.datasync();
    if (this.#dirty.name) await this.#disk.syncDir(this.dir);
    this.#dirty = { data: false, name: false };
  }

  /** sync(), then the file closed; nothing is written after. */
  async close(): Promise<void> {
    await this.sync();
    this.#closed = true;
    await this.#current?.handle.close().catch(() => {});
    this.#current = undefined;
  }

  #run(op: () => Promise<void>): Promise<void> {
    this.#chain = this.#chain.then(async () => {
      if (this.#broken) return;
      try {
        await op();
      } catch (err) {
        this.#broken = true;
        this.#pending = [];
        this.log.error({ dir: this.dir, err }, 'key journal write failed; Idempotency-Keys are kept across a restart only while their WAL segment is, until the server restarts; check WAL_DIR and its volume');
        await this.#current?.handle.close().catch(() => {});
        this.#current = undefined;
      }
    });
    return this.#chain;
  }

  async #write(): Promise<void> {
    this.#writeQueued = false;
    if (this.#pending.length === 0) return;
    const data = Buffer.from(this.#pending.join(''), 'utf8');
    const count = this.#pendingCount;
    const maxAt = this.#pendingMaxAt;
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#pendingCount = 0;
    this.#pendingMaxAt = 0;
    const current = await this.#fileFor();
    await current.handle.writeFile(data);
    current.count += count;
    current.maxAt = Math.max(current.maxAt, maxAt);
    this.#dirty.data = true;
    await this.#deleteOld();
  }

  /** The file to write to: a new one once the current one has covered its part of the window or of IDEMPOTENCY_MAX_KEYS. */
  async #fileFor(): Promise<JournalFile & { handle: FileHandle }> {
    const now = this.#now();
    const { windowMs, maxKeys } = this.options;
    const current = this.#current;
    if (current !== undefined && now < current.openedAt + windowMs / FILES_PER_WINDOW && current.count < Math.ceil(maxKeys / FILES_PER_WINDOW)) return current;
    if (current !== undefined) {
      // What it holds must be durable before a segment holding the same keys goes: synced as it is set aside.
      await this.#syncCurrent(current.handle);
      await current.handle.close();
      this.#files.push({ name: current.name, maxAt: current.maxAt, count: current.count });
      this.#current = undefined;
    }
    const name = fileName(this.#nextSeq++);
    const handle = await this.#disk.open(path.join(this.dir, name), WRITE_FLAGS, 0o644);
    this.#current = { name, maxAt: 0, count: 0, handle, openedAt: now };
    this.#dirty = { data: false, name: true };
    return this.#current;
  }

  /** Deletes the closed files whose every key is past the window, or that newer ones outnumber (oldest first). */
  async #deleteOld(): Promise<void> {
    const now = this.#now();
    let newer = this.#files.reduce((n, f) => n + f.count, this.#current?.count ?? 0);
    while (this.#files.length > 0) {
      const oldest = this.#files[0]!;
      newer -= oldest.count;
      if (oldest.maxAt + this.options.windowMs > now && newer < this.options.maxKeys) return;
      await this.#disk.remove(this.dir, oldest.name);
      this.#files.shift();
    }
  }
}

/**
 * Appends the keys of a journal file to `keys`, read a chunk at a time (never the whole file in
 * memory); the lines that do not check out (a torn tail among them) are skipped and logged.
 */
async function readFile(disk: Disk, file: string, chunk: Buffer, keys: KeyAt[], log: Logger): Promise<void> {
  const handle = await disk.open(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  let skipped = 0;
  let rest = '';
  try {
    if (!(await handle.stat()).isFile()) throw new NotRegular(`${file} is not a regular file`);
    for (let position = 0; ; ) {
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, position);
      if (bytesRead === 0) break;
      position += bytesRead;
      // latin1: a line the journal wrote is ASCII, and no character is split between chunks.
      const lines = (rest + chunk.toString('latin1', 0, bytesRead)).split('\n');
      rest = lines.pop()!; // after the last newline: empty, or the start of the next line
      for (const line of lines) {
        const k = decodeLine(line);
        if (k === undefined) skipped++;
        else keys.push(k);
      }
    }
  } finally {
    await handle.close();
  }
  if (rest.length > 0) skipped++; // a line cut short at the end: a torn tail
  if (skipped > 0) log.warn({ file: path.basename(file), lines: skipped }, 'key journal: unreadable lines skipped (a torn tail or damage); their Idempotency-Keys are not restored');
}
