// `npm run bench [-- <scenario> ...] [--seconds N] [--rounds N] [--connections N] [--env K=V ...]`:
// runs the scenarios against a local S3 server, the server from dist/ and its baselines, all on
// loopback. --env sets a server variable in every scenario (e.g. --env GZIP_LEVEL=1).
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { httpEngine } from '../src/ingest/server.js';
import { uwsLoadError } from '../src/ingest/uws.js';
import { GENERATOR } from './lib/load.js';
import { PINNING, pinSelf } from './lib/procs.js';
import { type Run, write } from './lib/report.js';
import type { Context, Result, Scenario } from './lib/scenario.js';
import { REPO, startS3 } from './lib/stack.js';
import { scenarios as formats } from './scenarios/formats.js';
import { scenario as outage } from './scenarios/outage.js';
import { scenario as overload } from './scenarios/overload.js';
import { scenario as slowS3 } from './scenarios/slow-s3.js';

const ALL: Scenario[] = [...formats, overload, slowS3, outage];

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '2' },
    connections: { type: 'string', default: '64' },
    env: { type: 'string', multiple: true, default: [] },
  },
});
const serverEnv = Object.fromEntries(values.env.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
const chosen = positionals.length === 0 ? ALL : positionals.map((id) => ALL.find((s) => s.id === id) ?? fail(`unknown scenario ${id}; known: ${ALL.map((s) => s.id).join(' ')}`));
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const connections = Number(values.connections);

function fail(message: string): never {
  process.stderr.write(`${message}\n`);
  process.exit(2);
}

pinSelf();
if (uwsLoadError !== undefined) fail(uwsLoadError);
if (httpEngine !== 'native') fail('uWebSockets.js runs a JS emulation here: the figures would mean nothing. Fix the install first.');
const startedAt = new Date().toISOString();
const s3 = await startS3();
const ctx: Context = { seconds, rounds, connections, s3, serverEnv };
const results: Result[] = [];
try {
  for (const scenario of chosen) {
    process.stdout.write(`${scenario.title} ...\n`);
    results.push(await scenario.run(ctx));
  }
} finally {
  await s3.proc.stop();
}
const run: Run = {
  startedAt,
  machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model.trim() ?? '?', node: process.version, engine: httpEngine, memoryGiB: Math.round(os.totalmem() / 2 ** 30) },
  settings: { generator: GENERATOR, pinning: PINNING, seconds, rounds, connections, serverEnv: values.env.join(' ') || 'defaults' },
  results,
};
process.stdout.write(`\n${write(run, join(REPO, 'bench', 'results'), join(REPO, 'bench', 'README.md'))}`);
if (results.some((r) => !r.settled.lossless)) {
  process.stderr.write('LOSS: a scenario did not account for every accepted event\n');
  process.exitCode = 1;
}
