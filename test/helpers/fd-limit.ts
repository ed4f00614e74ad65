// Runs an ES module script in a child process under `ulimit -n`, where it can run out of file
// descriptors for real (EMFILE): a shortage no test can cause in its own process on cue.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { baseEnv, ROOT } from './server.js';

/**
 * Prepended to the script: `exhaustFds()` opens /dev/null until EMFILE and returns a function that
 * closes them all again.
 */
const PRELUDE = `
import { openSync as __open, closeSync as __close } from 'node:fs';
const exhaustFds = () => {
  const held = [];
  try { for (;;) held.push(__open('/dev/null', 'r')); } catch (err) { if (err.code !== 'EMFILE') throw err; }
  return () => { for (const fd of held.splice(0)) __close(fd); };
};
`;

/** The last line the script prints, parsed as JSON. `${ROOT}` in the script names the repository. */
export async function runUnderFdLimit<T>(limit: number, script: string, env: Record<string, string> = {}): Promise<T> {
  const { stdout } = await promisify(execFile)('sh', ['-c', `ulimit -n ${limit}; exec "${process.execPath}" --input-type=module -e "$SCRIPT"`], {
    cwd: ROOT,
    env: baseEnv({ ...env, SCRIPT: PRELUDE + script }),
  });
  return JSON.parse(stdout.trim().split('\n').pop()!) as T;
}
