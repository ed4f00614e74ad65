// `npm run bench [-- <scenario> ...] [--seconds N] [--rounds N] [--connections N] [--env K=V ...]
// [--target URL [--target-pid PID] ...] [--save]`: runs the scenarios against a local S3 server, the
// server from dist/ and its baselines, all on loopback. --env sets a server variable in every
// scenario (e.g. --env GZIP_LEVEL=1); --target loads another ingest endpoint beside them in
// scenarios 1-4. Results go to the ignored .bench/results/, or with --save to bench/results/ and
// bench/README.md. `npm run bench -- --profile [single|array|ndjson|gzip ...]` (array if none)
// profiles the server by stage instead (bench/lib/profile-run.ts).
import { existsSync } from 'node:fs';
import os from 'node:os';
import { uwsLoadError } from '../src/ingest/uws.js';
import { type Options, parseBenchArgs } from './lib/args.js';
import { GENERATOR } from './lib/load.js';
import { PINNING, pinSelf } from './lib/procs.js';
import { profileRun } from './lib/profile-run.js';
import { profileMarkdown, type Run, write, writeProfile } from './lib/report.js';
import type { Context } from './lib/context.js';
import type { Result, Scenario } from './lib/scenario.js';
import { outside, startS3 } from './lib/stack.js';
import { scenarios as formats } from './scenarios/formats.js';
import { scenario as ackLevels } from './scenarios/ack-levels.js';
import { scenario as outage } from './scenarios/outage.js';
import { scenario as overload } from './scenarios/overload.js';
import { scenario as slowS3 } from './scenarios/slow-s3.js';
import { scenario as workers } from './scenarios/workers.js';
import { scenario as groupCommit } from './scenarios/group-commit.js';

const ALL: Scenario[] = [...formats, overload, slowS3, outage, ackLevels, workers, groupCommit];

function fail(message: string): never {
  process.stderr.write(`${message}\n`);
  process.exit(2);
}

let options: Options;
try {
  options = parseBenchArgs(process.argv.slice(2), ALL.map((s) => s.id));
} catch (err) {
  fail((err as Error).message);
}
const { seconds, rounds, connections, serverEnv, save } = options;
const chosen = options.scenarios.length === 0 ? ALL : options.scenarios.map((id) => ALL.find((s) => s.id === id)!);
for (const { pid } of options.targets) {
  if (pid !== undefined && !existsSync(`/proc/${pid}`)) fail(`--target-pid ${pid}: no such process`);
}
if (options.targets.length > 0 && !chosen.some((s) => formats.includes(s))) fail('--target is loaded in scenarios 1-4 only (single array ndjson gzip): choose one of them');
const shapes = ['single', 'array', 'ndjson', 'gzip'] as const;
const profiled = options.scenarios.length === 0 ? (['array'] as const) : options.scenarios.filter((id): id is (typeof shapes)[number] => (shapes as readonly string[]).includes(id));
if (options.profile && profiled.length !== Math.max(options.scenarios.length, 1)) fail('--profile takes the request shapes of scenarios 1-4 only: single array ndjson gzip');
if (options.profile && options.targets.length > 0) fail('--profile profiles the server only: no --target');

pinSelf();
if (uwsLoadError !== undefined) fail(`uWebSockets.js did not load: ${uwsLoadError}`);
const startedAt = new Date().toISOString();
const s3 = await startS3();
const ctx: Context = { seconds, rounds, connections, s3, serverEnv, targets: options.targets.map((t) => outside(t.url, t.pid)) };
const machine = { cpus: os.cpus().length, cpu: os.cpus()[0]?.model.trim() ?? '?', node: process.version, engine: 'native', memoryGiB: Math.round(os.totalmem() / 2 ** 30) };
const envText = Object.entries(serverEnv).map(([k, v]) => `${k}=${v}`).join(' ');
if (options.profile) {
  try {
    const profiles = [];
    for (const shape of profiled) {
      process.stdout.write(`profile: ${shape} ...\n`);
      profiles.push(await profileRun(ctx, shape));
    }
    const run = { startedAt, machine, settings: { generator: GENERATOR, pinning: PINNING, seconds, connections, serverEnv: envText || 'defaults', loadavg: os.loadavg().map((l) => l.toFixed(1)).join(' ') }, profiles };
    const { md, files } = writeProfile(run, profileMarkdown(run));
    process.stdout.write(`\n${md}\nWritten: ${files.join(', ')}\n`);
  } finally {
    await s3.proc.stop();
  }
  process.exit();
}
const results: Result[] = [];
try {
  for (const scenario of chosen) {
    process.stdout.write(`${scenario.title} ...\n`);
    results.push(...[await scenario.run(ctx)].flat());
  }
} finally {
  await s3.proc.stop();
}
const run: Run = {
  startedAt,
  machine,
  settings: {
    generator: GENERATOR,
    pinning: PINNING,
    seconds,
    rounds,
    connections,
    serverEnv: envText || 'defaults',
    ...(options.targets.length > 0 ? { targets: options.targets.map((t) => (t.pid === undefined ? t.url : `${t.url} (pid ${t.pid})`)).join(', ') } : {}),
  },
  results,
};
const { md, files } = write(run, save);
process.stdout.write(`\n${md}\nWritten: ${files.join(', ')}${save ? '' : ' (not committed; --save writes bench/results/ and bench/README.md)'}\n`);
if (results.some((r) => !r.settled.lossless)) {
  process.stderr.write('LOSS: a scenario did not account for every accepted event\n');
  process.exitCode = 1;
}
