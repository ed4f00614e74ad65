// The connection cap: stop accepting before the process runs out of file descriptors.
//
// uWS 20 has no hook on a connection's open or close, and at the fd limit its accept loop spins
// (accept fails with EMFILE, the listening socket stays readable) while nothing else is served.
// So open descriptors are counted from /proc/self/fd a few times a second, and at the cap the
// listening socket is closed (new connections are refused by the kernel) and opened again on the
// same port once connections have gone. uWS 20 cannot take the port again while any connection
// it accepted on it is still open, so that is retried until they have all gone: idle ones are
// closed after 10 s, and a load balancer that fails its health checks drains the rest.
import { readdirSync, readFileSync } from 'node:fs';

const CHECK_EVERY_MS = 250;
/** Descriptors kept free for the rest of the process (S3 sockets, DLQ files), and 1/16 of the limit more. */
const RESERVED_FDS = 32;
/** Resume accepting once this share of the connections have gone, so the listener does not flap. */
const RESUME_SHARE = 0.1;

export interface Listener {
  pause(): void;
  /** Rejects if the port could not be taken again (it is retried at the next check). */
  resume(): Promise<unknown>;
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
export function fdCap(maxConnections: number | undefined): FdCap | undefined {
  const base = openFds();
  if (base === undefined || !Number.isFinite(base)) return undefined;
  const limit = fdLimit();
  const byLimit = limit === undefined ? Infinity : limit - RESERVED_FDS - Math.ceil(limit / 16);
  const pauseAt = Math.max(Math.min(byLimit, maxConnections === undefined ? Infinity : base + maxConnections), base + 1);
  if (!Number.isFinite(pauseAt)) return undefined;
  return { pauseAt, resumeBelow: pauseAt - Math.max(1, Math.ceil((pauseAt - base) * RESUME_SHARE)) };
}

/** In open descriptors: stop accepting at `pauseAt`, accept again below `resumeBelow`. */
export interface FdCap {
  readonly pauseAt: number;
  readonly resumeBelow: number;
}

export class ConnectionCap {
  #timer: NodeJS.Timeout | undefined;
  #paused = false;
  #resuming = false;
  #resumeFailures = 0;
  #fds = 0;

  constructor(
    private readonly cap: FdCap,
    private readonly listener: Listener,
    private readonly log: CapLog,
  ) {}

  /** At or over the cap at the last check: a request should be answered 503 and its connection closed. */
  get full(): boolean {
    return this.#fds > this.cap.pauseAt;
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
    if (!this.#paused && this.#fds >= this.cap.pauseAt) {
      this.#paused = true;
      this.listener.pause();
      this.log.warn({ openFds: Number.isFinite(this.#fds) ? this.#fds : 'all', capFds: this.cap.pauseAt }, 'connection cap reached: not accepting connections');
    } else if (this.#paused && !this.#resuming && this.#fds < this.cap.resumeBelow) {
      this.#resuming = true;
      this.listener.resume().then(
        () => {
          this.#resuming = false;
          this.#paused = false;
          this.#resumeFailures = 0;
          this.log.info({ openFds: this.#fds }, 'accepting connections again');
        },
        (err: Error) => {
          this.#resuming = false;
          // While connections accepted on the port are open (see the top): retried at every check, logged once.
          if (this.#resumeFailures++ === 0) this.log.warn({ err: err.message }, 'accepting connections again failed; retrying');
        },
      );
    }
  };
}
