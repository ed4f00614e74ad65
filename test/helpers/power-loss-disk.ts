// A machine that loses every write not yet fsynced: a DiskFs (src/disk/disk.ts) for tests that play
// a power cut. It writes through to real files and remembers what is not yet durable:
//
// - a file's data written since the last fsync or fdatasync of that file; a write to a handle opened
//   O_DSYNC (or O_SYNC) is durable once it returns. Only the data: O_DSYNC does not make a new
//   file's directory entry durable;
// - a directory's entries created (open O_CREAT, mkdir), renamed or removed since that directory
//   was last fsynced (a rename between two directories is one change in each, made durable by each
//   one's own fsync).
//
// The cut comes just before the operation `cutAt` picks (or while it is in flight, when it says
// 'during': the operation is started, then the power cut), or when cut() is called. From then on
// every call rejects with PowerCut, and what was in flight never answers its caller (it rejects
// too): the old instance learns nothing more and changes nothing. Once the operations in flight are
// over, every file and directory it touched is put back to its durable state (`reverted`). An
// operation in flight at the cut may or may not have reached the disk, as `random` decides: a
// write to an O_DSYNC handle keeps a prefix of its bytes (a torn write; none, some or all), an
// fsync happened or not.
//
// What it does not model: writes reordered within a file or torn inside a sector (a durable prefix is
// kept whole), a change not fsynced that survives all the same (a journal may keep some, in order:
// here every one is lost), metadata (times, modes: lutimes passes through), a directory's own removal or rename
// (the disk layer makes neither), and files changed behind its back after it first looked at their
// directory (taken as durable). What a directory held when the disk first touched it, and a file's
// content before its first write, are taken as durable. Linux only: a file's content is read back
// through /proc/self/fd, whatever the handle was opened for.
import { constants as fsConstants } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { DiskFs } from '../../src/disk/disk.js';
import type { Random } from '../chaos/random.js';

export class PowerCut extends Error {
  override name = 'PowerCut';
  readonly code = 'EIO';

  constructor() {
    super('the power is off');
  }
}

/** One call the disk was asked to make: its number (from 1), its name and the path it names. */
export interface Op {
  readonly n: number;
  readonly name: string;
  readonly path: string;
}

/**
 * A file or directory as a directory entry names it; `durable`: a file's durable content, unknown
 * until it is first changed. `writes` counts the writes made, `durableAt` how many of them
 * `durable` holds: an fsync that returns after a later one (or after an O_DSYNC write) must not
 * take back what that one made durable.
 */
interface Node {
  readonly kind: 'file' | 'dir';
  durable?: Buffer;
  writes?: number;
  durableAt?: number;
}

/** A directory's entries now, and as its last fsync left them; `changes` and `durableAt` as a Node's `writes` and `durableAt`. */
interface DirState {
  durable: Map<string, Node>;
  current: Map<string, Node>;
  changes: number;
  durableAt: number;
}

/** The FileHandle methods the disk layer and the WAL's writer call; any other is not modelled. */
type Handle = Pick<FileHandle, 'fd' | 'write' | 'writev' | 'writeFile' | 'truncate' | 'read' | 'readFile' | 'stat' | 'sync' | 'datasync' | 'close'>;

export interface PowerLossOptions {
  /**
   * Whether to cut the power just before this operation (true: it is not made), or while it is in
   * flight ('during': it is started, and left as the cut leaves any operation in flight).
   */
  readonly cutAt?: (op: Op) => boolean | 'during';
  /** What an operation in flight at the cut left on disk. */
  readonly random: Random;
}

export class PowerLossDisk {
  /** Hand it to `new Disk(...)`. */
  readonly fs: DiskFs;
  /** Operations asked for so far (the one the cut refused included). */
  ops = 0;
  /** The operation the power was cut before (or during: `cutInFlight`); 'cut()' when a caller cut it. */
  cutBefore: Op | undefined;
  /** Whether `cutBefore` was started, in flight at the cut (cutAt said 'during'). */
  cutInFlight = false;
  readonly #options: PowerLossOptions;
  readonly #dirs = new Map<string, Promise<DirState>>();
  readonly #inFlight = new Set<Promise<unknown>>();
  readonly #open = new Set<FileHandle>();
  #cut = false;
  #reverted: Promise<void> | undefined;
  #revertedNow: () => void = () => {};
  readonly reverted: Promise<void>;

  constructor(options: PowerLossOptions) {
    this.#options = options;
    this.reverted = new Promise((resolve) => (this.#revertedNow = resolve));
    this.fs = {
      open: ((file: string, flags: number, mode?: number) => this.#op('open', file, () => this.#openFile(path.resolve(file), flags, mode))) as DiskFs['open'],
      rename: ((from: string, to: string) => this.#op('rename', String(from), () => this.#rename(String(from), String(to)))) as DiskFs['rename'],
      unlink: ((file: string) => this.#op('unlink', String(file), () => this.#unlink(String(file)))) as DiskFs['unlink'],
      mkdir: ((dir: string, options?: { recursive?: boolean }) => this.#op('mkdir', String(dir), () => this.#mkdir(String(dir), options?.recursive === true))) as DiskFs['mkdir'],
      lstat: ((file: string) => this.#op('lstat', String(file), () => fs.lstat(file))) as DiskFs['lstat'],
      lutimes: ((file: string, atime: Date, mtime: Date) => this.#op('lutimes', String(file), () => fs.lutimes(file, atime, mtime))) as DiskFs['lutimes'],
      readdir: ((dir: string, options?: { withFileTypes?: boolean }) => this.#op('readdir', String(dir), () => fs.readdir(dir, options as { withFileTypes: true }))) as DiskFs['readdir'],
    };
  }

  /** Whether the power is off. */
  get isCut(): boolean {
    return this.#cut;
  }

  /** Cuts the power now; resolves once the files are back to their durable state. */
  cut(): Promise<void> {
    this.#cutNow({ n: this.ops, name: 'cut()', path: '' });
    return this.reverted;
  }

  #cutNow(op: Op): void {
    if (this.#cut) return;
    this.#cut = true;
    this.cutBefore = op;
    this.#reverted ??= this.#revert().then(this.#revertedNow);
  }

  /** Counts the call, refuses it once the power is off, and tells its caller nothing that happened after the cut. */
  #op<T>(name: string, file: string, run: () => Promise<T>): Promise<T> {
    if (this.#cut) return Promise.reject(new PowerCut());
    const op = { n: ++this.ops, name, path: path.resolve(file) };
    const cut = this.#options.cutAt?.(op);
    if (cut === true) {
      this.#cutNow(op);
      return Promise.reject(new PowerCut());
    }
    const running = run();
    this.#inFlight.add(running);
    const forget = () => this.#inFlight.delete(running);
    running.then(forget, forget);
    if (cut === 'during') {
      this.cutInFlight = true;
      this.#cutNow(op);
    }
    return running.then(
      (value) => {
        if (this.#cut) throw new PowerCut();
        return value;
      },
      (err: unknown) => {
        throw this.#cut ? new PowerCut() : err;
      },
    );
  }

  async #revert(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
    for (const handle of this.#open) await handle.close().catch(() => {});
    this.#open.clear();
    // Parents first: a directory whose own entry is not durable goes with everything in it.
    for (const dir of [...this.#dirs.keys()].sort((a, b) => a.length - b.length)) {
      const state = await this.#dirs.get(dir)!;
      if (!(await fs.lstat(dir).then((s) => s.isDirectory(), () => false))) continue;
      for (const [name, node] of state.current) {
        if (state.durable.get(name) !== node) await fs.rm(path.join(dir, name), { recursive: true, force: true });
      }
      for (const [name, node] of state.durable) {
        // A file never changed through this disk holds its durable content already.
        if (node.kind === 'file' && node.durable !== undefined) await fs.writeFile(path.join(dir, name), node.durable);
      }
      state.current = new Map(state.durable);
    }
  }

  /** The directory's entries as this disk knows them: what it held when first touched is durable. */
  #dir(dir: string): Promise<DirState> {
    let state = this.#dirs.get(dir);
    if (state === undefined) {
      state = fs.readdir(dir, { withFileTypes: true }).then((entries) => {
        const current = new Map(entries.map((e): [string, Node] => [e.name, { kind: e.isDirectory() ? 'dir' : 'file' }]));
        return { current, durable: new Map(current), changes: 0, durableAt: 0 };
      });
      this.#dirs.set(dir, state);
    }
    return state;
  }

  /** The node at `file`; one made behind this disk's back since it listed the directory is taken as durable. */
  async #node(file: string): Promise<{ state: DirState; name: string; node: Node | undefined }> {
    const state = await this.#dir(path.dirname(file));
    const name = path.basename(file);
    let node = state.current.get(name);
    if (node === undefined) {
      const stat = await fs.lstat(file).catch(() => undefined);
      if (stat !== undefined) {
        node = { kind: stat.isDirectory() ? 'dir' : 'file' };
        state.current.set(name, node);
        state.durable.set(name, node);
      }
    }
    return { state, name, node };
  }

  /** Before a file first changes, what it holds is its durable content. */
  async #keep(node: Node | undefined, file: string): Promise<void> {
    if (node?.kind === 'file' && node.durable === undefined) node.durable = await fs.readFile(file);
  }

  async #openFile(file: string, flags: number, mode: number | undefined): Promise<FileHandle> {
    const writes = (flags & (fsConstants.O_WRONLY | fsConstants.O_RDWR)) !== 0;
    if (!writes && (flags & fsConstants.O_CREAT) === 0) return this.#track(await fs.open(file, flags, mode), undefined, flags, file);
    const { state, name, node } = await this.#node(file);
    await this.#keep(node, file);
    const real = await fs.open(file, flags, mode);
    if (node !== undefined) return this.#track(real, node, flags, file);
    const made: Node = { kind: 'file', durable: Buffer.alloc(0) };
    state.current.set(name, made);
    state.changes++;
    return this.#track(real, made, flags, file);
  }

  async #rename(from: string, to: string): Promise<void> {
    from = path.resolve(from);
    to = path.resolve(to);
    const source = await this.#node(from);
    const target = await this.#node(to);
    await this.#keep(source.node, from);
    await this.#keep(target.node, to);
    await fs.rename(from, to);
    source.state.current.delete(source.name);
    source.state.changes++;
    if (source.node !== undefined) target.state.current.set(target.name, source.node);
    target.state.changes++;
  }

  async #unlink(file: string): Promise<void> {
    file = path.resolve(file);
    const { state, name, node } = await this.#node(file);
    await this.#keep(node, file);
    await fs.unlink(file);
    state.current.delete(name);
    state.changes++;
  }

  async #mkdir(dir: string, recursive: boolean): Promise<string | undefined> {
    dir = path.resolve(dir);
    // The directories that are not there yet, outermost first: each is a new entry in its parent.
    const missing: string[] = [];
    for (let d = dir; recursive || d === dir; d = path.dirname(d)) {
      if (await fs.lstat(d).then(() => true, () => false)) break;
      missing.unshift(d);
      if (path.dirname(d) === d) break;
    }
    for (const d of missing) await this.#dir(path.dirname(d));
    const made = await fs.mkdir(dir, { recursive });
    for (const d of missing) {
      const parent = await this.#dir(path.dirname(d));
      parent.current.set(path.basename(d), { kind: 'dir' });
      parent.changes++;
      this.#dirs.set(d, Promise.resolve({ current: new Map(), durable: new Map(), changes: 0, durableAt: 0 }));
    }
    return made;
  }

  /** A handle whose calls go through #op; `node` is the file written (undefined: opened to read, or a directory to fsync). */
  #track(real: FileHandle, node: Node | undefined, flags: number, file: string): FileHandle {
    this.#open.add(real);
    const dir = (flags & fsConstants.O_DIRECTORY) !== 0 ? file : undefined;
    const dsync = (flags & fsConstants.O_DSYNC) !== 0;
    const where = file;
    const written = async <T>(write: () => Promise<T>): Promise<T> => {
      const result = await write();
      if (node !== undefined) node.writes = (node.writes ?? 0) + 1;
      if (dsync && node !== undefined) await this.#synced(node, real, this.#cut);
      return result;
    };
    const handle: Handle = {
      fd: real.fd,
      write: ((...args: unknown[]) => this.#op('write', where, () => written(() => passOn(real, real.write, args)))) as FileHandle['write'],
      writev: (buffers, position) => this.#op('writev', where, () => written(() => real.writev(buffers, position))),
      writeFile: (data, options) => this.#op('writeFile', where, () => written(() => real.writeFile(data, options))),
      truncate: (len) => this.#op('truncate', where, () => written(() => real.truncate(len))),
      read: ((...args: unknown[]) => this.#op('read', where, () => passOn(real, real.read, args))) as FileHandle['read'],
      readFile: ((...args: unknown[]) => this.#op('readFile', where, () => passOn(real, real.readFile, args))) as FileHandle['readFile'],
      stat: ((options?: { bigint?: false }) => this.#op('stat', where, () => real.stat(options))) as FileHandle['stat'],
      sync: () => this.#op('sync', where, () => this.#sync(real, node, dir, () => real.sync())),
      datasync: () => this.#op('datasync', where, () => this.#sync(real, node, dir, () => real.datasync())),
      close: () =>
        this.#op('close', where, async () => {
          this.#open.delete(real);
          await real.close();
        }),
    };
    return handle as FileHandle;
  }

  /** An fsync: what the file (or directory) held when it began is durable once it returns. */
  async #sync(real: FileHandle, node: Node | undefined, dir: string | undefined, sync: () => Promise<void>): Promise<void> {
    if (dir !== undefined) {
      const state = await this.#dir(dir);
      const [entries, at] = [new Map(state.current), state.changes];
      await sync();
      // In flight at the cut: it reached the disk or it did not.
      if ((!this.#cut || this.#options.random.chance(0.5)) && at > state.durableAt) [state.durable, state.durableAt] = [entries, at];
      return;
    }
    if (node === undefined) return sync();
    const at = node.writes ?? 0;
    const content = await contentOf(real);
    await sync();
    if ((!this.#cut || this.#options.random.chance(0.5)) && at > (node.durableAt ?? 0)) [node.durable, node.durableAt] = [content, at];
  }

  /** After a write to an O_DSYNC handle: durable; one in flight at the cut (`torn`) keeps a prefix of what it added. */
  async #synced(node: Node, real: FileHandle, torn: boolean): Promise<void> {
    const at = node.writes ?? 0;
    const now = await contentOf(real);
    if (at <= (node.durableAt ?? 0)) return;
    node.durableAt = at;
    const before = node.durable ?? Buffer.alloc(0);
    if (!torn) node.durable = now;
    else if (now.length >= before.length && now.subarray(0, before.length).equals(before)) node.durable = now.subarray(0, before.length + this.#options.random.between(0, now.length - before.length));
    else node.durable = this.#options.random.chance(0.5) ? now : before;
  }
}

/** A FileHandle method called with the arguments its caller gave, whichever of its overloads they fit. */
function passOn(real: FileHandle, method: (...args: never[]) => Promise<unknown>, args: unknown[]): Promise<unknown> {
  return (method as (...args: unknown[]) => Promise<unknown>).apply(real, args);
}

/** Everything a file holds now, read through its handle's descriptor whatever the handle may do. */
function contentOf(real: FileHandle): Promise<Buffer> {
  return fs.readFile(`/proc/self/fd/${real.fd}`);
}
