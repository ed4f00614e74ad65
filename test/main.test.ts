// The process (src/main.ts), as a user runs it: --help and --version answer without starting a
// server, an unknown argument exits 2, and a server that cannot start exits 1 saying why on stderr
// and in a fatal log line. Real processes of dist/main.js: the process is the subject. (Moved here
// from test/e2e/startup.test.ts and test/config.test.ts; signals and the exit after a shutdown are
// test/e2e/signals.test.ts's, a port in use too.)
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import t from 'tap';
import { baseEnv, MAIN, ROOT, spawnServer } from './helpers/server.js';

const VERSION = (JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { version: string }).version;

/** Runs dist/main.js with `args` and a bounded time: a server that started instead would be killed, failing the test. */
async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [MAIN, ...args], { env: baseEnv({}), timeout: 10_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

t.test('--version prints the version and exits 0', async (t) => {
  const answer = await run(['--version']);
  t.equal(answer.code, 0);
  t.equal(answer.stdout, `event-ingest ${VERSION}\n`);
});

t.test('--help prints the usage and exits 0, without starting a server', async (t) => {
  for (const flag of ['--help', '-h']) {
    const answer = await run([flag]);
    t.equal(answer.code, 0, flag);
    t.match(answer.stdout, /^usage: node dist\/main\.js \[--help \| --version\]/, flag);
    t.match(answer.stdout, /docs\/config\.md/, 'points at the settings');
    t.notMatch(answer.stdout, /"msg"/, 'no log line: nothing started');
  }
});

t.test('an unknown argument is refused with the usage on stderr, exit 2', async (t) => {
  const answer = await run(['--port=9']);
  t.equal(answer.code, 2);
  t.match(answer.stderr, /unknown argument "--port=9"/);
  t.match(answer.stderr, /usage: node dist\/main\.js/);
});

// What a user meets: main prints the message, logs it as fatal and exits 1.
t.test('a real server with a bad value exits 1, says why on stderr and logs it as fatal', async (t) => {
  const server = spawnServer(t, { GZIP_LEVEL: '10', S3_BUCKET: 'bucket', AWS_REGION: 'us-east-1' });
  const exit = await server.exited;
  const message = /^invalid configuration: "GZIP_LEVEL" should be an integer from 1 to 9, got "10"$/m;
  t.equal(exit.code, 1, 'exits 1');
  t.match(server.stderr(), message);
  t.match(server.logs.find((l) => l.level === 'fatal'), { msg: 'cannot start', reason: message }, 'and logs it as fatal');
});

t.test('a real server with a bucket and no region exits 1 and says so', async (t) => {
  const server = spawnServer(t, { S3_BUCKET: 'b', AWS_REGION: '' });
  t.equal((await server.exited).code, 1, 'exits 1');
  t.match(server.stderr(), /no AWS region: set AWS_REGION/);
  t.match(server.logs.find((l) => l.level === 'fatal'), { msg: 'cannot start', reason: /no AWS region: set AWS_REGION/ }, 'and logs it as fatal');
});
