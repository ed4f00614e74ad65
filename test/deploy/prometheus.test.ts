// The alert rules: valid, unit-tested by promtool, and true to the code and the runbook.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import t from 'tap';
import { metricsIn } from '../helpers/promql.js';
import { startS3 } from '../helpers/s3.js';
import { ROOT, startServer } from '../helpers/server.js';

const run = promisify(execFile);
const DIR = `${ROOT}deploy/prometheus`;
const rules = readFileSync(`${DIR}/alerts.yml`, 'utf8');

/** promtool ships in Debian's prometheus package; .ci/run installs it. */
async function promtool(...args: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await run('promtool', args, { cwd: DIR });
    return stdout + stderr;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stdout?: string; stderr?: string };
    if (e.code === 'ENOENT') throw new Error('promtool not found: install it (Debian: apt-get install -y prometheus)');
    throw new Error(`promtool ${args.join(' ')} failed:\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

t.test('promtool check rules: the rules are valid', async (t) => {
  t.match(await promtool('check', 'rules', 'alerts.yml'), /SUCCESS: \d+ rules found/);
});

t.test('promtool test rules: every alert fires when it should and not when it should not', async (t) => {
  t.match(await promtool('test', 'rules', 'alerts.test.yml'), /SUCCESS/);
  const alerts = [...rules.matchAll(/- alert: (\w+)/g)].map((m) => m[1]!);
  const tests = readFileSync(`${DIR}/alerts.test.yml`, 'utf8');
  for (const alert of alerts) t.ok(tests.includes(`alertname: ${alert}\n`), `${alert} has a unit test`);
});

t.test('every metric the rules use is exported by the server', async (t) => {
  const exprs = [...rules.matchAll(/expr: (\|\n(?:\s{10}.*\n)+|.*)/g)].map((m) => m[1]!);
  const used = metricsIn(exprs);
  const s3 = await startS3(t);
  const server = await startServer(t, s3.env);
  const exported = await server.exported();
  t.ok(used.size >= 10, `${used.size} metrics used`);
  for (const name of used) t.ok(exported.has(name), `${name} is exported`);
});

t.test('every runbook_url points at a section of docs/operations.md', async (t) => {
  const runbook = readFileSync(`${ROOT}docs/operations.md`, 'utf8');
  const anchors = new Set([...runbook.matchAll(/^## (.+)$/gm)].map((m) => m[1]!.toLowerCase().replace(/[^a-z0-9 -]/g, '').replace(/ /g, '-')));
  const links = [...rules.matchAll(/runbook_url: docs\/operations\.md#(\S+)/g)].map((m) => m[1]!);
  t.equal(links.length, [...rules.matchAll(/- alert: /g)].length, 'every alert has a runbook_url');
  for (const anchor of links) t.ok(anchors.has(anchor), `#${anchor} is a heading in docs/operations.md`);
});
