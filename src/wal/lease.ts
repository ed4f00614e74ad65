// Leases on a shared root (DURABLE_ROOT, EFS): each instance keeps ROOT/<instance>/lease fresh; a
// directory whose lease went stale belongs to a dead instance, and one live instance adopts it.
//
// Invariants:
// - a lease is fresh while its mtime is younger than DURABLE_LEASE_STALE_MS; its holder touches
//   it every quarter of that, and exits (status 1) if it finds its lease taken or gone: another
//   instance judged it dead and is adopting its directory, so it must stop writing there;
// - `adopt.lock` in a dead instance's directory names its one adopter (created with O_EXCL); one
//   whose adopter's own lease is stale is taken over by renaming it away first (rename is atomic:
//   of two survivors only one renames it), so two survivors never adopt the same directory;
// - mtimes are set by the writer's clock (utimes), so clocks must agree well within the stale time.
import { randomUUID } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';

export const LEASE_FILE = 'lease';
export const ADOPT_LOCK = 'adopt.lock';

interface LeaseContent {
  readonly instanceId: string;
  readonly host: string;
  readonly pid: number;
  readonly token: string;
}

export class Lease {
  readonly #timer: NodeJS.Timeout;

  private constructor(
    private readonly file: string,
    private readonly token: string,
    staleMs: number,
    log: Logger,
  ) {
    this.#timer = setInterval(() => {
      this.#renew().catch((err: unknown) => {
        if (!(err instanceof LeaseLost)) return log.warn({ file, err: (err as Error).message }, 'lease could not be renewed; trying again');
        log.fatal({ file }, `lease lost: ${file} is gone or another instance's; this instance was judged dead and its directory is being adopted; exiting`);
        process.exit(1);
      });
    }, Math.max(250, Math.floor(staleMs / 4))).unref();
  }

  /** Writes this instance's lease in `dir` (its own directory under the root) and keeps it fresh. */
  static async take(dir: string, instanceId: string, staleMs: number, log: Logger): Promise<Lease> {
    await fs.mkdir(dir, { recursive: true });
    const content: LeaseContent = { instanceId, host: os.hostname(), pid: process.pid, token: randomUUID() };
    const file = path.join(dir, LEASE_FILE);
    const temp = `${file}.${content.token}`;
    await fs.writeFile(temp, `${JSON.stringify(content)}\n`);
    await fs.rename(temp, file);
    return new Lease(file, content.token, staleMs, log);
  }

  /** Removes the lease (a clean stop): what is left in the directory is adopted once the lease would be stale. */
  async release(): Promise<void> {
    clearInterval(this.#timer);
    if ((await readLease(this.file))?.token === this.token) await fs.rm(this.file, { force: true });
  }

  async #renew(): Promise<void> {
    if ((await readLease(this.file))?.token !== this.token) throw new LeaseLost();
    const now = new Date();
    await fs.utimes(this.file, now, now);
  }
}

class LeaseLost extends Error {}

async function readLease(file: string): Promise<LeaseContent | undefined> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as LeaseContent;
  } catch {
    return undefined;
  }
}

/** An instance directory's lease is stale (or missing, and the directory unchanged for as long). */
export async function isStale(dir: string, staleMs: number): Promise<boolean> {
  const stat = (await fs.stat(path.join(dir, LEASE_FILE)).catch(() => undefined)) ?? (await fs.stat(dir).catch(() => undefined));
  return stat !== undefined && Date.now() - stat.mtimeMs > staleMs;
}

export interface AdoptLock {
  release(): Promise<void>;
}

/** Takes `dir`'s adopt.lock for `instanceId`, or undefined when a live instance holds it. */
export async function takeAdoptLock(root: string, dir: string, instanceId: string, staleMs: number): Promise<AdoptLock | undefined> {
  const file = path.join(dir, ADOPT_LOCK);
  const token = randomUUID();
  for (let round = 0; round < 2; round++) {
    try {
      const handle = await fs.open(file, fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY, 0o644);
      try {
        await handle.writeFile(`${JSON.stringify({ instanceId, token })}\n`);
      } finally {
        await handle.close();
      }
      return {
        release: async () => {
          const held = (await readLease(file)) as { token?: string } | undefined;
          if (held?.token === token) await fs.rm(file, { force: true });
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = (await readLease(file)) as { instanceId?: string } | undefined;
    const holderDir = holder?.instanceId === undefined ? undefined : path.join(root, holder.instanceId);
    const holderGone = holderDir === undefined ? await isStale(dir, staleMs) : await isStale(holderDir, staleMs).then(async (stale) => stale || !(await exists(holderDir)));
    if (!holderGone) return undefined;
    // Atomic: of two survivors taking over the same dead adopter's lock, one renames it, the other gets ENOENT.
    try {
      await fs.rename(file, `${file}.${token}`);
      await fs.rm(`${file}.${token}`, { force: true });
    } catch {
      return undefined;
    }
  }
  return undefined;
}

export async function exists(file: string): Promise<boolean> {
  return fs.stat(file).then(() => true, () => false);
}
