// The README's and docs' configuration and metrics tables say what the code does, in both directions.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import t from 'tap';
import { VARIABLES } from '../src/config/table.js';
import { configVariables } from './helpers/config-vars.js';
import { startS3 } from './helpers/s3.js';
import { ROOT, startServer } from './helpers/server.js';

/** The table rows (lines starting with a backticked name) under `heading` in a Markdown file, split into cells. */
function tableRows(heading: string, file: string): string[][] {
  const text = readFileSync(`${ROOT}${file}`, 'utf8');
  const section = text.split(`\n## ${heading}\n`)[1]!.split('\n## ')[0]!;
  return section
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .map((line) => line.split('|').slice(1, -1).map((cell) => cell.trim()));
}

/** The backticked names in the first column of the table under `heading` in a Markdown file. */
function firstColumn(heading: string, file = 'README.md'): Set<string> {
  return new Set(tableRows(heading, file).flatMap(([first]) => [...first!.matchAll(/`([A-Za-z0-9_]+)/g)].map((m) => m[1]!)));
}

/** A doc's cell says what the table's text says: the same, or the same and then more after ':', ';' or ' ('. */
function says(cell: string | undefined, text: string): boolean {
  return cell === text || [':', ';', ' ('].some((then) => cell?.startsWith(`${text}${then}`));
}

t.test('every variable in the configuration tables is a row of src/config/table.ts, and every row is in them', async (t) => {
  // AWS_REGION is read by the AWS SDK itself.
  const readme = [...firstColumn('Configuration')].filter((name) => name !== 'AWS_REGION');
  t.same([...configVariables()].sort(), readme.sort(), 'README.md');
  t.same([...configVariables()].sort(), [...firstColumn('Variables', 'docs/config.md')].sort(), 'docs/config.md');
});

t.test('docs/config.md gives each variable the default and the accepted values of its row in src/config/table.ts, and README.md its default', async (t) => {
  const doc = new Map(tableRows('Variables', 'docs/config.md').map(([name, ...cells]) => [name!.replaceAll('`', ''), cells]));
  const readme = new Map(tableRows('Configuration', 'README.md').map(([name, ...cells]) => [name!.replaceAll('`', ''), cells]));
  for (const [name, variable] of Object.entries(VARIABLES)) {
    const [defaultCell, accepted] = doc.get(name) ?? [];
    t.ok(says(defaultCell, variable.default), `docs/config.md, ${name}: default ${variable.default}`, { found: defaultCell });
    t.ok(says(accepted, variable.accepted), `docs/config.md, ${name}: accepted ${variable.accepted}`, { found: accepted });
    t.ok(says(readme.get(name)?.[0], variable.default), `README.md, ${name}: default ${variable.default}`, { found: readme.get(name)?.[0] });
  }
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

t.test('every test file the docs name exists, so a claim cannot outlive the test that shows it', async (t) => {
  const docs = repositoryFiles().filter((path) => path.endsWith('.md'));
  // test/a/b.test.ts: the mirror rule's example in docs/architecture.md.
  const named = new Set(docs.flatMap((path) => [...readFileSync(path, 'utf8').matchAll(/\btest\/[\w./-]+\.test\.ts\b/g)].map((m) => m[0]).filter((name) => name !== 'test/a/b.test.ts')));
  t.ok(named.size >= 10, `found the test files the docs name (${named.size})`);
  for (const file of named) t.ok(existsSync(join(ROOT, file)), `${file} exists`);
  // A bare name in a fault table ("durable-ack.ops.test.ts") is one of test/'s files.
  const durability = readFileSync(join(ROOT, 'docs/durability.md'), 'utf8');
  const tests = new Set(repositoryFiles().filter((path) => path.endsWith('.test.ts')).map((path) => path.split('/').pop()));
  for (const [, bare] of durability.matchAll(/`([\w.-]+\.test\.ts)`/g)) t.ok(tests.has(bare), `docs/durability.md: ${bare} is a test file`);
});

t.test("docs/operations.md's timeouts in the path: the server's rows are the code's defaults, stopTimeout the task definition's, each in order", async (t) => {
  const text = readFileSync(`${ROOT}docs/operations.md`, 'utf8');
  const section = text.split('\n## Timeouts in the path\n')[1]!.split('\n## ')[0]!;
  const rows = new Map(
    section
      .split('\n')
      .filter((line) => line.startsWith('| ') && !line.startsWith('| timeout ') && !line.startsWith('|---'))
      .map((line) => line.split('|').slice(1, -1).map((cell) => cell.trim()))
      .map(([name, seconds, ...rest]) => [name!.replaceAll('`', ''), { seconds: Number(seconds), text: rest.join(' | ') }]),
  );
  const seconds = (name: string): number => rows.get(name)?.seconds ?? NaN;
  const byDefault = (name: keyof typeof VARIABLES): number => VARIABLES[name].read(name, undefined) as number;
  t.same([...rows.keys()], ["client's wait for an answer", 'ALB idle timeout', 'HTTP_IDLE_TIMEOUT_S', 'request stalled mid-headers or mid-body', 'ACK_TIMEOUT_MS', 'deregistration delay', 'SHUTDOWN_TIMEOUT_MS', 'ECS stopTimeout'], 'every timeout in the path, in order');
  t.equal(seconds('HTTP_IDLE_TIMEOUT_S'), byDefault('HTTP_IDLE_TIMEOUT_S'), 'the keep-alive default');
  t.match(rows.get('HTTP_IDLE_TIMEOUT_S')!.text, `Keep-Alive: timeout=${byDefault('HTTP_IDLE_TIMEOUT_S')}`);
  t.equal(seconds('ACK_TIMEOUT_MS'), byDefault('ACK_TIMEOUT_MS') / 1000);
  t.equal(seconds('SHUTDOWN_TIMEOUT_MS'), byDefault('SHUTDOWN_TIMEOUT_MS') / 1000);
  const task = JSON.parse(readFileSync(`${ROOT}deploy/ecs/task-definition.json`, 'utf8')) as { containerDefinitions: { stopTimeout: number; environment: { name: string; value: string }[] }[] };
  const [container] = task.containerDefinitions;
  t.equal(seconds('ECS stopTimeout'), container!.stopTimeout, 'the task definition\'s stopTimeout');
  t.equal(Number(container!.environment.find((e) => e.name === 'SHUTDOWN_TIMEOUT_MS')?.value) / 1000, seconds('SHUTDOWN_TIMEOUT_MS'), 'the task definition keeps the default SHUTDOWN_TIMEOUT_MS');
  t.ok(seconds('ALB idle timeout') < seconds('HTTP_IDLE_TIMEOUT_S'), 'the load balancer closes an idle connection before the server does');
  t.ok(seconds('SHUTDOWN_TIMEOUT_MS') + 5 <= seconds('ECS stopTimeout'), 'at least 5 s for the spill before SIGKILL');
  t.ok(seconds("client's wait for an answer") > seconds('ACK_TIMEOUT_MS'), 'a client waits longer than an answer may take');
  t.ok(seconds('deregistration delay') > 0 && seconds('request stalled mid-headers or mid-body') > 0, 'every row has its seconds');
});
