// `npm run soak -- [--minutes N | --seconds N] [--seed N] [--env KEY=VALUE ...]`: the long chaos
// soak (docs/chaos.md). Prints progress and a summary; exits 1 if the audit found a loss or a defect.
import { randomInt } from 'node:crypto';
import { parseArgs } from 'node:util';
import { formatReport } from './report.js';
import { runSoak } from './soak.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string' },
    seconds: { type: 'string' },
    seed: { type: 'string' },
    env: { type: 'string', multiple: true },
  },
});
const seconds = values.seconds !== undefined ? Number(values.seconds) : Number(values.minutes ?? '5') * 60;
const seed = values.seed !== undefined ? Number(values.seed) : randomInt(2 ** 31);
if (!(seconds > 0) || !Number.isInteger(seed) || seed < 0 || (values.env ?? []).some((kv) => !kv.includes('='))) {
  process.stderr.write('usage: npm run soak -- [--minutes N | --seconds N] [--seed N] [--env KEY=VALUE ...]\n');
  process.exit(2);
}
const env = Object.fromEntries((values.env ?? []).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));

// What a tap test's teardown does, here: the servers, s3rver, the proxy and the temp directories
// go when the soak ends, last started first.
const teardowns: (() => unknown)[] = [];
const owner = { teardown: (fn: () => unknown) => void teardowns.push(fn) };
const cleanUp = async () => {
  for (const fn of teardowns.splice(0).reverse()) await fn();
};
// Ctrl-C or a kill: stop the servers rather than leave them running.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    cleanUp().then(
      () => process.exit(1),
      () => process.exit(1),
    );
  });
}

console.log(`chaos soak: seed ${seed}, ${seconds} s of chaos${Object.keys(env).length > 0 ? `, ${JSON.stringify(env)}` : ''}`);
let code = 1;
try {
  const report = await runSoak({ seed, durationMs: seconds * 1000, owner, env, progress: (line) => console.log(line) });
  console.log(formatReport(report));
  code = report.failures.length === 0 ? 0 : 1;
} catch (err) {
  console.log(`the soak could not run to the end (seed ${seed}): ${(err as Error).stack}`);
} finally {
  await cleanUp();
}
process.exit(code);
