// The alert rules: valid, unit-tested by promtool, and true to the code and the runbook.
import { execFile } from 'node:child_process';
import { cpSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import t from 'tap';
import { ACCESS_CODES, ERROR_CODES } from '../../src/metrics/s3-codes.js';
import { startInProcess } from '../helpers/in-process.js';
import { metricsIn } from '../helpers/promql.js';
import { runbookAnchors, runbookBase } from '../helpers/runbook.js';
import { startS3 } from '../helpers/s3.js';
import { ROOT } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

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
  // ACK_LEVEL=disk exports every metric of the default and the WAL's.
  const server = await startInProcess(t, { ...s3.env, ACK_LEVEL: 'disk', WAL_MAX_BYTES: '67108864' });
  const exported = await server.exported();
  t.ok(used.size >= 10, `${used.size} metrics used`);
  for (const name of used) t.ok(exported.has(name), `${name} is exported`);
  // increase() sees a series' first error only if the series was there, at 0, before it.
  const page = await (await fetch(server.metricsUrl)).text();
  for (const code of ERROR_CODES) t.match(page, `\ns3_put_errors_total{code="${code}"} 0\n`, `s3_put_errors_total{code="${code}"} at 0 from the start`);
  for (const result of ['ok', 'error']) t.match(page, `\ns3_put_duration_seconds_count{result="${result}"} 0\n`, `s3_put_duration_seconds{result="${result}"} at 0`);
  t.match(page, '\ns3_put_failing_seconds 0\n', 'S3 not failing');
  t.match(page, '\nwal_max_bytes 67108864\n', 'the WAL\'s limit, for IngestWalNearlyFull');
});

t.test('every runbook_url is absolute, starts with the one base, and points at a section of docs/operations.md', async (t) => {
  const anchors = runbookAnchors();
  const base = runbookBase();
  t.match(base, /^https:\/\/[^#\s]+\/operations\.md$/, 'an absolute base URL of the runbook');
  const links = [...rules.matchAll(/runbook_url: (\S+)/g)].map((m) => m[1]!);
  const alerts = [...rules.matchAll(/- alert: (\w+)/g)].map((m) => m[1]!);
  t.equal(links.length, alerts.length, 'every alert has a runbook_url');
  for (const [i, link] of links.entries()) {
    t.equal(link, `${base}#${alerts[i]!.toLowerCase()}`, `${alerts[i]} links its own section from the base`);
    t.ok(anchors.has(link.slice(base.length + 1)), `${link} is a heading in docs/operations.md`);
  }
  const tests = readFileSync(`${DIR}/alerts.test.yml`, 'utf8');
  for (const [, link] of tests.matchAll(/runbook_url: (\S+)/g)) t.ok(link!.startsWith(`${base}#`), `the unit tests expect the same base: ${link}`);
});

t.test('deploy/runbook-base.mjs moves every link, Prometheus and CloudWatch, to a new base', async (t) => {
  const dir = tempDir(t, 'deploy');
  cpSync(`${ROOT}deploy`, dir, { recursive: true });
  const old = runbookBase();
  const base = 'https://wiki.example.net/ingest/operations.md';
  await run(process.execPath, [`${dir}/runbook-base.mjs`, `${base}/`]);
  t.equal((await run(process.execPath, [`${dir}/runbook-base.mjs`])).stdout.trim(), base, 'the trailing slash given is dropped');
  for (const file of ['prometheus/alerts.yml', 'prometheus/alerts.test.yml', 'cloudwatch/alarms.json']) {
    const text = readFileSync(`${dir}/${file}`, 'utf8');
    t.notOk(text.includes(old), `${file}: nothing left of the old base`);
    t.ok(text.includes(`${base}#ingest`), `${file}: links on the new base`);
  }
  t.match((await run('promtool', ['test', 'rules', 'alerts.test.yml'], { cwd: `${dir}/prometheus` })).stdout, /SUCCESS/, 'the unit tests still pass');
  await t.rejects(run(process.execPath, [`${dir}/runbook-base.mjs`, 'wiki/operations.md']), 'a relative base is refused');
});

t.test('IngestS3AccessDenied matches exactly the codes the server and the EMF lines call refusals', async (t) => {
  const codes = /code=~"([^"]+)"/.exec(rules)![1]!.split('|');
  t.same(codes.sort(), [...ACCESS_CODES].sort());
  for (const code of codes) t.ok(ERROR_CODES.includes(code), `${code} is a label s3_put_errors_total can have`);
});
