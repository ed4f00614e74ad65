// The log format: pino JSON lines with an ISO time and the level as a word, on the file descriptor
// asked for (1 for the server, 2 for the dlq command), written synchronously so that a line logged
// just before process.exit() is not lost. The writes go to a real descriptor, so a small child
// process (no server) logs and this test reads its stdout and stderr.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import t from 'tap';
import { ROOT } from './helpers/server.js';

// Logs to both descriptors, then exits at once: an asynchronous destination would lose the lines.
const CHILD = `
import { createLogger } from '${ROOT}src/log.ts';
createLogger(1).info({ part: 'x' }, 'to stdout');
createLogger(2, { level: 'warn', base: { instance: 'i-1' } }).info('below the level');
createLogger(2, { level: 'warn', base: { instance: 'i-1' } }).warn('to stderr');
process.exit(0);
`;

t.test('one JSON line per call on the chosen descriptor: ISO time, level as a word, options applied, nothing lost at exit', async (t) => {
  const { stdout, stderr } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', CHILD], { timeout: 10_000 });
  const out = stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
  const err = stderr.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
  t.equal(out.length, 1, 'fd 1: the server\'s line alone');
  t.match(out[0], { level: 'info', msg: 'to stdout', part: 'x' });
  t.match(out[0]!.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'ISO time');
  t.equal(new Date(out[0]!.time as string).toISOString(), out[0]!.time);
  t.type(out[0]!.pid, 'number', 'pino\'s default base kept when no base is given');
  t.equal(err.length, 1, 'fd 2: the warn line only, the info line is below the level');
  t.match(err[0], { level: 'warn', msg: 'to stderr', instance: 'i-1' });
  t.notOk('pid' in err[0]!, 'a base given replaces pino\'s');
});
