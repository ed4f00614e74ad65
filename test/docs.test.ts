// The README's and docs' configuration and metrics tables say what the code does, in both directions.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
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
    t.ok(exported.has(fixed), `${fixed}, a name operators' alerts use, is exported`);
  }
});

/** Every file of the repository a reader or the build sees: what git would track, without reading .gitignore. */
function repositoryFiles(dir = ROOT): string[] {
  const skipped = new Set(['.git', 'node_modules', 'dist', 'data', '.tap', 'coverage', '.bench']);
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    if (skipped.has(entry.name)) return [];
    const path = join(dir, entry.name);
    return entry.isDirectory() ? repositoryFiles(path) : entry.isFile() ? [path] : [];
  });
}

t.test('docs and code are self-contained: nothing cites a specification or files outside the repository', async (t) => {
  // Built from parts, so that this file does not match itself.
  const outside = new RegExp(['SPEC\\s*§', 'SPEC\\.md', '\\.\\./shared/', '/work' + '/shared', 'seeds' + '/0', 'operational' + ' guide', '\\bthe' + ' issue\\b'].join('|'), 'i');
  const found = repositoryFiles()
    .filter((path) => !path.endsWith('package-lock.json'))
    .flatMap((path) =>
      readFileSync(path, 'utf8')
        .split('\n')
        .flatMap((line, i) => (outside.test(line) ? [`${relative(ROOT, path)}:${i + 1}: ${line.trim()}`] : [])),
    );
  t.same(found, [], 'say it here, in docs/api.md, docs/config.md or docs/metrics.md, instead');
});

t.test('docs/api.md names every error code the server answers with', async (t) => {
  const api = readFileSync(`${ROOT}docs/api.md`, 'utf8');
  const source = ['src/ingest/respond.ts', 'src/ingest/body.ts'].map((file) => readFileSync(`${ROOT}${file}`, 'utf8')).join('\n');
  const codes = new Set([...source.matchAll(/(?:errorBody\(|Rejection\(\d{3}, )'([a-z_]+)'/g)].map((m) => m[1]!));
  t.ok(codes.size >= 15, `found the codes in the source (${[...codes].join(', ')})`);
  for (const code of codes) t.match(api, `\`${code}\``, `${code} is in docs/api.md`);
});
