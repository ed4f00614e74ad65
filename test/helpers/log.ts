// A pino logger whose lines a test reads back: the unit tests' stand-in for stdout.
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';

/** A line as pino writes it: `level` as its number (the server's own format, words, is src/log.ts's). */
export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** A logger at debug whose lines are kept, parsed, in `lines`; `written` is called after each. */
export function memoryLog(written: (line: LogLine) => void = () => {}): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      const line = JSON.parse(chunk.toString()) as LogLine;
      lines.push(line);
      written(line);
      done();
    },
  });
  // Synchronous enough for the tests: pino writes each line in its own write() call.
  return { log: pino({ level: 'debug' }, stream), lines };
}
