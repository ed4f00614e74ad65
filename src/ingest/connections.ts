// The connection cap: stop accepting before the process runs out of file descriptors.
//
// uWS 20 has no hook on a connection's open or close, and at the fd limit its accept loop spins
// (accept fails with EMFILE, the listening socket stays readable) while nothing else is served.
// So open descriptors are counted from /proc/self/fd a few times a second, and at the cap the
// listening socket is closed (new connections are refused by the kernel) and opened again on the
// same port once connections have gone (uWS closes idle ones after 10 s).
import { readdirSync, readFileSync } from 'node:fs';

const CHECK_EVERY_MS = 250;
/** Descriptors kept free for the rest of the process (S3 sockets, DLQ files), and 1/16 of the limit more. */
const RESERVED_FDS = 32;
/** Resume accepting below this share of the cap, so the listener does not flap. */
const RESUME_SHARE = 0.9;

export interface Listener {
  pause(): void;
  /** Resolves false if the port could not be taken again (it is retried at the next check). */
  resume(): Promise<boolean>;
}

export interface CapLog {
  warn(fields: object, msg: string): void;
  info(fields: object, msg: string): void;
}

/** Open file descriptors, or undefined where /proc is not available. */
export function openFds(): number | undefined {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch (err) {
    // Reading the directory takes a descriptor too: failing for want of one means at the limit.
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'EMFILE' || code === 'ENFILE' ? Infinity : undefined;
  }
}

/** The soft limit on open files, from /proc/self/limits; undefined where it cannot be read. */
export function fdLimit(): number | undefined {
  try {
    const line = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return line === null || line[1] === 'unlimited' ? undefined : Number(line[1]);
  } catch {
    return undefined;
  }
}

/**
 * The cap in open descriptors: `maxConnections` beyond those open at start-up, and never closer
 * to the fd limit than the reserve (for S3 connections, DLQ files, and connections accepted
 * between two checks). Undefined: nothing to enforce (no /proc, no limit, no MAX_CONNECTIONS).
 */
export function fdCap(maxConnections: number | undefined): number | undefined {
  const base = openFds();
  if (base === undefined) return undefined;
  const limit = fdLimit();
  const byLimit = limit === undefined ? Infinity : limit - RESERVED_FDS - Math.ceil(limit / 16);
  const cap = Math.min(byLimit, maxConnections === undefined ? Infinity : base + maxConnections);
  return Number.isFinite(cap) ? Math.max(cap, base + 1) : undefined;
}

export class ConnectionCap {
  #timer: NodeJS.Timeout | undefined;
  #paused = false;
  #resuming = false;
  #fds = 0;

  constructor(
    private readonly capFds: number,
    private readonly listener: Listener,
    private readonly log: CapLog,
  ) {}

  /** At or over the cap at the last check: a request should be answered 503 and its connection closed. */
  get full(): boolean {
    return this.#fds > this.capFds;
  }

  start(): void {
    this.#timer ??= setInterval(this.#check, CHECK_EVERY_MS);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #check = (): void => {
    this.#fds = openFds() ?? 0;
    if (!this.#paused && this.#fds >= this.capFds) {
      this.#paused = true;
      this.listener.pause();
      this.log.warn({ openFds: Number.isFinite(this.#fds) ? this.#fds : 'all', capFds: this.capFds }, 'connection cap reached: not accepting connections');
    } else if (this.#paused && !this.#resuming && this.#fds < this.capFds * RESUME_SHARE) {
      this.#resuming = true;
      this.listener.resume().then(
        (ok) => {
          this.#resuming = false;
          if (!ok) return;
          this.#paused = false;
          this.log.info({ openFds: this.#fds }, 'accepting connections again');
        },
        () => (this.#resuming = false),
      );
    }
  };
}
