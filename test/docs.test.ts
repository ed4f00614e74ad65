// The README's and docs' configuration and metrics tables say what the code does, in both directions.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { startS3 } from './helpers/s3.js';
import { configVariables } from './helpers/config-vars.js';
import { ROOT, startServer } from './helpers/server.js';

/** The backticked names in the first column of the table under `heading` in a Markdown file. */
function firstColumn(heading: string, file = 'README.md'): Set<string> {
  const text = readFileSync(`${ROOT}${file}`, 'utf8');
  const section = text.split(`\n## ${heading}\n`)[1]!.split('\n## ')[0]!;
  const names = section
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .flatMap((line) => [...line.split('|')[1]!.matchAll(/`([A-Za-z0-9_]+)/g)].map((m) => m[1]!));
  return new Set(names);
}

t.test('every variable in the configuration tables is read by src/config.ts, and every one it reads is in them', async (t) => {
  // AWS_REGION is read by the AWS SDK itself.
  const readme = [...firstColumn('Configuration')].filter((name) => name !== 'AWS_REGION');
  t.same([...configVariables()].sort(), readme.sort(), 'README.md');
  t.same([...configVariables()].sort(), [...firstColumn('Variables', 'docs/config.md')].sort(), 'docs/config.md');
});

t.test('every metric in docs/metrics.md is exported, and every exported metric of ours is in it', async (t) => {
  const s3 = await startS3(t);
  const server = await startServer(t, s3.env);
  const all = await server.exported();
  const exported = new Set([...all].filter((name) => !/^(process|nodejs)_/.test(name)));
  t.same([...firstColumn('Metrics of the server', 'docs/metrics.md')].sort(), [...exported].sort(), 'docs/metrics.md');
  for (const name of firstColumn('Node.js process metrics used', 'docs/metrics.md')) t.ok(all.has(name), `${name} is exported`);
  t.same([...firstColumn('Metrics', 'docs/dlq.md')].sort(), [...exported].filter((name) => name.startsWith('dlq_')).sort(), 'docs/dlq.md lists every DLQ metric');
  for (const fixed of [
    'http_requests_rejected_queue_full_total',
    'http_requests_rejected_body_too_large_total',
    's3_put_errors_total',
    's3_events_stored_total',
    'dlq_events_dropped_total',
  ]) {
    t.ok(exported.has(fixed), `SPEC §6 name ${fixed} is exported`);
  }
});
