// The connection cap: past the cap, a new connection is closed as soon as it is accepted.
//
// uWS's filter hook reports each connection as it opens (+1) and closes (-1), so the count is
// exact and costs nothing per request. The default cap keeps a reserve below the process's fd
// limit: at the limit accept() fails with EMFILE, the listening socket stays readable and the
// event loop spins while nothing else is served; the reserve leaves descriptors for S3 sockets,
// DLQ files, and the connection being refused.
import { readdirSync, readFileSync } from 'node:fs';
import type { HttpResponse } from 'uWebSockets.js';
import type { HttpCounts } from '../metrics/http.js';

/** Descriptors kept free for the rest of the process, and 1/16 of the limit more. */
const RESERVED_FDS = 32;
const LOG_EVERY_MS = 10_000;

export interface CapLog {
  warn(fields: object, msg: string): void;
}

/** Open file descriptors, or undefined where /proc is not available. */
function openFds(): number | undefined {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return undefined;
  }
}

/** The soft limit on open files, from /proc/self/limits; undefined where it cannot be read. */
function fdLimit(): number | undefined {
  try {
    const line = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return line === null || line[1] === 'unlimited' ? undefined : Number(line[1]);
  } catch {
    return undefined;
  }
}

/**
 * Connections allowed: `maxConnections` when set (the operator's number, as is), else as many as
 * fit below the fd limit with the reserve kept, given the descriptors open now (at start-up).
 * Infinity: no limit to enforce.
 */
export function connectionCap(maxConnections: number | undefined): number {
  if (maxConnections !== undefined) return maxConnections;
  const limit = fdLimit();
  const base = openFds();
  if (limit === undefined || base === undefined) return Infinity;
  return Math.max(1, limit - RESERVED_FDS - Math.ceil(limit / 16) - base);
}

/** Counts connections in `counts` (connectionsOpen, connectionsRefused) and closes those over the cap. */
export class ConnectionCap {
  #loggedAt = -Infinity;

  constructor(
    private readonly cap: number,
    private readonly counts: HttpCounts,
    private readonly log: CapLog,
  ) {}

  /** uWS's filter hook: +1 as a connection opens, -1 as it closes. True if it closed the connection. */
  readonly track = (res: HttpResponse, change: number): boolean => {
    const counts = this.counts;
    counts.connectionsOpen += change;
    if (change < 0 || counts.connectionsOpen <= this.cap) return false;
    counts.connectionsRefused++;
    // Rate-limited: a flood would otherwise be a line per connection.
    const now = Date.now();
    if (now - this.#loggedAt >= LOG_EVERY_MS) {
      this.#loggedAt = now;
      this.log.warn({ open: counts.connectionsOpen - 1, cap: this.cap, refused: counts.connectionsRefused }, 'connection cap reached: closing new connections');
    }
    res.close();
    return true;
  };
}
