// The one log format of the server and the dlq command: pino JSON lines, ISO time, level as a word.
import { destination, pino, stdTimeFunctions, type Logger, type LoggerOptions } from 'pino';

/**
 * Level as a word (`"level":"warn"`), as the docs and alert queries speak of them. Synchronous
 * writes: log lines are few (none per request), and a line written is never lost or reordered at
 * exit, whatever ends the process. `fd` 1 for the server; the dlq command logs to 2, keeping stdout
 * for its answer.
 */
export function createLogger(fd: 1 | 2, options: LoggerOptions = {}): Logger {
  return pino(
    { timestamp: stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) }, ...options },
    destination({ dest: fd, sync: true }),
  );
}
