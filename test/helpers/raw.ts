// Raw HTTP over a socket, for what fetch will not send: malformed requests, pipelining, slow bodies.
import net from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import type { Owner } from './fault-proxy.js';

export interface RawAnswer {
  /** Everything the server sent, as latin1. */
  text: string;
  /** The status of the first answer, or 0 for none. */
  status: number;
  /** The body of the first answer, chunked framing removed. */
  body: string;
  /** The server closed the connection (else `waitMs` passed first). */
  closed: boolean;
}

/** Opens `count` connections that send nothing; counts those the server closes. Destroyed at teardown. */
export function idleConnections(t: Owner, port: number, count: number): { closedByServer(): number; destroy(): void } {
  let closed = 0;
  const sockets = Array.from({ length: count }, () =>
    net
      .connect(port, '127.0.0.1')
      .on('error', () => {})
      .on('close', () => closed++),
  );
  const destroy = (): void => sockets.forEach((s) => s.destroy());
  t.teardown(destroy);
  return { closedByServer: () => closed, destroy };
}

/** Sends `request` and collects what comes back until the server closes, or `waitMs` passes. */
export function rawRequest(port: number, request: string | Buffer, waitMs = 5000): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    const done = (closed: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(parseAnswer(text, closed));
    };
    const timer = setTimeout(() => done(false), waitMs);
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.on('error', () => {}); // a reset after the answer: what was read still counts
    socket.on('close', () => done(true));
    socket.write(request);
  });
}

export function parseAnswer(text: string, closed: boolean): RawAnswer {
  const split = text.indexOf('\r\n\r\n');
  const head = split === -1 ? text : text.slice(0, split);
  let body = split === -1 ? '' : text.slice(split + 4);
  if (/transfer-encoding: chunked/i.test(head)) {
    let unchunked = '';
    for (let at = 0; at < body.length; ) {
      const eol = body.indexOf('\r\n', at);
      const size = parseInt(body.slice(at, eol), 16);
      if (eol === -1 || !(size > 0)) break;
      unchunked += body.slice(eol + 2, eol + 2 + size);
      at = eol + 2 + size + 2;
    }
    body = unchunked;
  }
  return { text, status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), body, closed };
}

/** A POST /v1/events head with these extra header lines (each ending in CRLF). */
export const postHead = (headers: string): string => `POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n${headers}\r\n`;

const statusBytes = (pid: number, field: 'VmHWM' | 'VmRSS'): number =>
  Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;

/** Peak resident memory of a process, from /proc/<pid>/status VmHWM, in bytes. */
export const peakRss = (pid: number): number => statusBytes(pid, 'VmHWM');

/**
 * Starts a new peak: writing 5 to clear_refs resets the kernel's high-water mark to the current
 * resident memory, which it returns, so `peakRss(pid) - resetPeakRss(pid)` is what a step added
 * and start-up (larger on Node 22) does not count.
 */
export function resetPeakRss(pid: number): number {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
  return statusBytes(pid, 'VmRSS');
}

/** CPU seconds (user + system) a process has used, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** A POST /v1/events of `body`, as its bytes on the wire. */
export const postOf = (body: string): string => `POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`;

/** Each answer in `text` as `status body`, in order (every answer of the server has a content-length). */
export const answersIn = (text: string): string[] =>
  [...text.matchAll(/HTTP\/1\.1 (\d{3})[^]*?\r\ncontent-length: (\d+)\r\n\r\n/gi)].map((m) => `${m[1]} ${text.slice(m.index + m[0].length, m.index + m[0].length + Number(m[2]))}`);

/** A connection to 127.0.0.1:`port`: what the server sent (latin1), and whether it closed; destroyed at teardown. */
export function rawConnection(t: Owner, port: number): { socket: net.Socket; seen: { text: string; closed: boolean } } {
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  t.teardown(() => socket.destroy());
  const seen = { text: '', closed: false };
  socket.on('data', (d: Buffer) => (seen.text += d.toString('latin1')));
  socket.on('error', () => {});
  socket.on('close', () => (seen.closed = true));
  return { socket, seen };
}
