// What an operator meets first: --help and --version answer without starting a server, the
// start-up lines say the version and the address, and /metrics says the version too.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import t from 'tap';
import { startInProcess } from '../helpers/in-process.js';
import { startS3 } from '../helpers/s3.js';
import { baseEnv, MAIN, ROOT } from '../helpers/server.js';

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

t.test('the first line and the listening line say the version; listening says the address; /metrics has ingest_build_info', async (t) => {
  const s3 = await startS3(t);
  // The lines of the server's start, in the test's process: the process is not the subject here.
  const server = await startInProcess(t, s3.env);
  t.match(server.logs[0], { level: 'info', msg: 'event-ingest starting', version: VERSION, node: process.version });
  // The message stays `listening`, which scripts wait for; the address is in its fields.
  const listening = server.logs.find((l) => l.msg === 'listening')!;
  t.match(listening, { address: `127.0.0.1:${server.port}`, host: '127.0.0.1', port: server.port, version: VERSION });
  t.equal(await server.metric('ingest_build_info', `{version="${VERSION}",node="${process.version}"}`), 1);
});
