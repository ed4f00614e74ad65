// The dlq command (`npm run dlq -- stats|list|drain`) on a real DLQ directory and a real S3 server,
// run in this process; test/dlq/cli.test.ts runs what needs a process of its own, and
// test/e2e/dlq-lock.test.ts the command beside a live server.
import { existsSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { refusedPort, startFaultProxy } from '../helpers/fault-proxy.js';
import { s3Env, startS3 } from '../helpers/s3.js';
import { dlqCommand as dlq, T0, writeDlqFile } from '../helpers/dlq.js';
import { startInProcess } from '../helpers/in-process.js';
import { eventually } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

/** A DLQ directory filled by a real server whose S3 was down: 12 events in single-event batches. */
async function filledDlq(t: Test): Promise<string> {
  const dir = tempDir(t, 'dlq');
  const server = await startInProcess(t, { ...s3Env(`http://127.0.0.1:${await refusedPort()}`), DLQ_DIR: dir, BATCH_MAX_EVENTS: '3', BATCH_MAX_AGE_MS: '50', UPLOAD_MAX_ATTEMPTS: '1', DLQ_REUPLOAD_IDLE_MS: '3600000' });
  for (let i = 0; i < 4; i++) await server.post(JSON.stringify([{ id: i * 3 }, { id: i * 3 + 1 }, { id: i * 3 + 2 }]));
  await eventually(async () => (await server.metric('dlq_events_spilled_total')) === 12);
  await server.stop();
  return dir;
}

t.test('stats and list show what is queued; a temp file of a live writer is left alone', async (t) => {
  const dir = await filledDlq(t);
  writeFileSync(join(dir, '.tmp-1800000000000-x-000000-00000000.jsonl.gz'), 'being written');
  const stats = await dlq(['stats'], { DLQ_DIR: dir });
  t.equal(stats.code, 0);
  t.match(stats.stdout, /^files\s+4$/m);
  t.match(stats.stdout, /^events\s+12$/m);
  t.match(stats.stdout, /^bytes\s+\d+$/m);
  t.match(stats.stdout, /^oldest\s+\d+ s \(spilled \d{4}-/m);
  const list = await dlq(['list'], { DLQ_DIR: dir });
  const lines = list.stdout.trim().split('\n');
  t.equal(lines.length, 4);
  for (const line of lines) t.match(line, /^\d{4}-\d\d-\d\dT\S+Z {2}events=3 {2}bytes=\d+ {2}key=raw\/\S+\.jsonl\.gz {2}file=\S+\.jsonl\.gz$/);
  t.ok(readdirSync(dir).some((n) => n.startsWith('.tmp-')), 'not removed by the command');
});

t.test('drain uploads every file to its original key and deletes it', async (t) => {
  const dir = await filledDlq(t);
  const s3 = await startS3(t);
  const drained = await dlq(['drain'], { ...s3.env, DLQ_DIR: dir });
  t.equal(drained.code, 0, drained.stderr);
  t.equal(drained.stdout.match(/^DLQ → RAW success: raw\/\S+ events=3$/gm)?.length, 4);
  t.match(drained.stdout, /drained 4 files, 12 events; 0 files left/);
  const ids = (await s3.objects()).flatMap((o) => o.records.map((r) => r.event.id as number)).sort((a, b) => a - b);
  t.same(ids, Array.from({ length: 12 }, (_, i) => i));
  t.match((await dlq(['stats'], { DLQ_DIR: dir })).stdout, /^files\s+0$/m);
});

t.test('drain with S3 down keeps the files, stops after three in a row fail (not waiting out every file), and exits 1', async (t) => {
  const dir = await filledDlq(t);
  const drained = await dlq(['drain'], { ...s3Env(`http://127.0.0.1:${await refusedPort()}`), DLQ_DIR: dir, UPLOAD_MAX_ATTEMPTS: '1' });
  t.equal(drained.code, 1);
  t.equal(drained.stdout.match(/^failed: raw\/\S+: .*; skipped, the file is kept$/gm)?.length, 3);
  t.match(drained.stdout, /^stopped: 3 files in a row failed with errors a later attempt could fix: S3 looks down or unreachable; the files not tried are kept$/m);
  t.match((await dlq(['stats'], { DLQ_DIR: dir })).stdout, /^files\s+4$/m);
});

t.test('drain skips a file S3 refuses for good and drains the ones behind it; exits 1, the refused file kept', async (t) => {
  const dir = tempDir(t, 'dlq');
  const keys = [0, 1, 2].map((n) => writeDlqFile(dir, `${T0}-poison-${n}`, [n], undefined, T0 + n));
  const s3 = await startS3(t);
  // Injected on the wire (a real HTTP 403 from the test proxy): S3 cannot be made to refuse one key.
  const proxy = await startFaultProxy(t, s3);
  proxy.decide = ({ key }) => (key === keys[0] ? { status: 403, code: 'AccessDenied' } : 'pass');
  const drained = await dlq(['drain'], { ...s3.env, S3_ENDPOINT: proxy.endpoint, DLQ_DIR: dir });
  t.equal(drained.code, 1, 'a file is left');
  t.same((await s3.objects()).map((o) => o.key), keys.slice(1), 'on main the drain stopped at the first file and stored nothing');
  t.match(drained.stdout, `failed: ${keys[0]}: `);
  t.match(drained.stdout, /; skipped, the file is kept\n/);
  t.match(drained.stdout, /drained 2 files, 2 events; 1 files left/);
  t.same(readdirSync(dir).filter((n) => n.endsWith('.jsonl.gz')), [`${T0}-poison-0.jsonl.gz`]);
});

t.test('list and drain print names and keys escaped: a control character in either cannot forge a line or reach the terminal', async (t) => {
  const dir = tempDir(t, 'dlq');
  // A real file: its name and the key in its header hold a newline and terminal escapes.
  const name = `${T0}-x\n\x1b[31mDLQ → RAW success: forged`;
  writeDlqFile(dir, name, [1], 'raw/2027/01/15/08/evil\x1b]0;pwned\x07\n.jsonl.gz');
  const controls = /[\x00-\x09\x0b-\x1f\x7f-\x9f]/;
  const list = await dlq(['list'], { DLQ_DIR: dir });
  t.equal(list.code, 0);
  t.notMatch(list.stdout, controls, 'no control character but the newline ending each line (on main: ESC and a forged line)');
  t.equal(list.stdout.split('\n').length, 2, 'one line');
  t.match(list.stdout, 'key=raw/2027/01/15/08/evil\\x1b]0;pwned\\x07\\x0a.jsonl.gz  file=1800000000000-x\\x0a\\x1b[31mDLQ → RAW success: forged.jsonl.gz\n');
  const s3 = await startS3(t);
  const drained = await dlq(['drain'], { ...s3.env, DLQ_DIR: dir });
  t.equal(drained.code, 1, 'kept: its name is no batch id');
  t.notMatch(drained.stdout, controls);
  t.notMatch(drained.stdout, /^DLQ → RAW success/m, 'no forged success line');
  t.match(drained.stdout, /^kept: raw\/2027\/01\/15\/08\/evil\\x1b\]0;pwned\\x07\\x0a\.jsonl\.gz \(file 1800000000000-x\\x0a\\x1b\[31mDLQ → RAW success: forged\.jsonl\.gz\): its name is not a batch id this server makes/m);
  t.same(await s3.objects(), [], 'nothing uploaded');
});

t.test('usage: an unknown or missing command exits 2; --help prints it to stdout and exits 0', async (t) => {
  const none = await dlq([], {});
  t.equal(none.code, 2);
  t.match(none.stderr, /^no command given\nusage: npm run dlq -- <command>/);
  const bogus = await dlq(['bogus'], {});
  t.equal(bogus.code, 2);
  t.match(bogus.stderr, /^unknown command: "bogus"\nusage: npm run dlq -- <command>/, 'names the argument it did not know');
  for (const flag of ['--help', '-h', 'help']) {
    const help = await dlq([flag], {});
    t.equal(help.code, 0, flag);
    t.match(help.stdout, /usage: npm run dlq -- <command>/, flag);
    t.equal(help.stderr, '', flag);
  }
});

t.test('stats and list only read: they log no "will be re-uploaded" line; list says when the DLQ is empty', async (t) => {
  const dir = await filledDlq(t);
  for (const command of ['stats', 'list']) {
    const answer = await dlq([command], { DLQ_DIR: dir });
    t.equal(answer.code, 0);
    t.notMatch(answer.stderr, /re-uploaded/, `${command} promises no re-upload`);
  }
  const emptyDir = tempDir(t, 'empty');
  const empty = await dlq(['list'], { DLQ_DIR: emptyDir });
  t.equal(empty.code, 0);
  t.equal(empty.stdout, `DLQ is empty: no files in ${emptyDir}\n`);
});

t.test('the command logs as the server does: JSON lines with ISO time and the level as a word', async (t) => {
  const dir = await filledDlq(t);
  const drained = await dlq(['drain'], { ...s3Env(`http://127.0.0.1:${await refusedPort()}`), DLQ_DIR: dir, UPLOAD_MAX_ATTEMPTS: '1' });
  const lines = drained.stderr.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.ok(lines.length > 0, 'it logged');
  for (const line of lines) {
    t.match(line.level, /^(trace|debug|info|warn|error|fatal)$/);
    t.match(line.time, /^\d{4}-\d\d-\d\dT/);
  }
  t.ok(lines.some((l) => l.level === 'warn' && l.msg === 'S3 put attempt failed'));
});

t.test('drain with DLQ_DIR/corrupt a symlink moves nothing out of DLQ_DIR: the bad file stays, and it says why', async (t) => {
  const dir = tempDir(t, 'dlq');
  const elsewhere = tempDir(t, 'elsewhere');
  symlinkSync(elsewhere, join(dir, 'corrupt'));
  writeFileSync(join(dir, 'garbage.jsonl.gz'), 'not gzip');
  const s3 = await startS3(t);
  const drained = await dlq(['drain'], { ...s3.env, DLQ_DIR: dir });
  t.same(readdirSync(elsewhere), [], 'on main: garbage.jsonl.gz landed in the link\'s target');
  t.ok(existsSync(join(dir, 'garbage.jsonl.gz')));
  t.match(drained.stderr, 'DLQ corrupt/ directory unusable');
  t.match(drained.stderr, `"message":"${join(dir, 'corrupt')} is a symbolic link`);
  t.match(drained.stderr, /"msg":"DLQ file not uploaded, skipped: it could not be moved to corrupt\/"/);
});
