// The one log format of the server and the dlq command: pino JSON lines, ISO time, level as a word.
import { destination, type DestinationStream, pino, stdTimeFunctions, type Logger, type LoggerOptions } from 'pino';

/** A file descriptor (1 for the server; 2 for the dlq command, keeping stdout for its answer), or a stream (a test's). */
export type LogTo = 1 | 2 | DestinationStream;

/**
 * Level as a word (`"level":"warn"`), as the docs and alert queries speak of them. Synchronous
 * writes to a descriptor: log lines are few (none per request), and a line written is never lost
 * or reordered at exit, whatever ends the process.
 */
export function createLogger(to: LogTo, options: LoggerOptions = {}): Logger {
  return pino(
    { timestamp: stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) }, ...options },
    typeof to === 'number' ? destination({ dest: to, sync: true }) : to,
  );
}
