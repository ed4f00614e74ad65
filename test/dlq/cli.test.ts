// `npm run dlq -- stats|list|drain` on a real DLQ directory (beside a live server: test/e2e/dlq-lock.test.ts).
import { chmodSync, chownSync, existsSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { refusedPort } from '../helpers/fault-proxy.js';
import { s3Env, startS3 } from '../helpers/s3.js';
import { runDlqCommand, writeDlqFile } from '../helpers/dlq.js';
import { eventually, NOBODY, nobodyCannotRun, type RunAs, startServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

const dlq = (args: string[], env: Record<string, string>, runAs: RunAs = {}) => runDlqCommand(t, args, env, runAs);

/** A DLQ directory filled by a real server whose S3 was down: 12 events in single-event batches. */
async function filledDlq(t: Test): Promise<string> {
  const dir = tempDir(t, 'dlq');
  const server = await startServer(t, { ...s3Env(`http://127.0.0.1:${await refusedPort()}`), DLQ_DIR: dir, BATCH_MAX_EVENTS: '3', BATCH_MAX_AGE_MS: '50', UPLOAD_MAX_ATTEMPTS: '1', DLQ_REUPLOAD_IDLE_MS: '3600000' });
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

t.test('drain with S3_BUCKET unset says LOCAL MODE first, as the server does, and drains into ./data/s3', async (t) => {
  const dir = tempDir(t, 'dlq');
  writeDlqFile(dir, 'a-local', [1]);
  const drained = await dlq(['drain'], { DLQ_DIR: dir });
  t.equal(drained.code, 0, drained.stderr);
  const first = JSON.parse(drained.stderr.split('\n')[0]!) as { level: string; msg: string };
  t.equal(first.level, 'warn');
  t.match(first.msg, /^LOCAL MODE: S3_BUCKET is not set, so drained files go to an embedded S3-compatible server with data under \.\/data\/s3\. Not for production: set S3_BUCKET\.$/);
  t.match(drained.stdout, /drained 1 files, 1 events; 0 files left/);
  const stats = await dlq(['stats'], { DLQ_DIR: dir });
  t.notMatch(stats.stderr, /LOCAL MODE/, 'stats and list do not touch S3, so they do not say it');
});

t.test('drain with S3 down keeps the files and exits 1', async (t) => {
  const dir = await filledDlq(t);
  const drained = await dlq(['drain'], { ...s3Env(`http://127.0.0.1:${await refusedPort()}`), DLQ_DIR: dir, UPLOAD_MAX_ATTEMPTS: '1' });
  t.equal(drained.code, 1);
  t.match(drained.stdout, /failed: raw\/\S+: .*; stopping, the file is kept/);
  t.match((await dlq(['stats'], { DLQ_DIR: dir })).stdout, /^files\s+4$/m);
});

t.test('drain sets a file it cannot read aside (EACCES, run as nobody) and drains the rest', { skip: nobodyCannotRun }, async (t) => {
  const dir = tempDir(t, 'dlq');
  chownSync(dir, 65534, 65534);
  writeDlqFile(dir, 'a-locked', [1]);
  writeDlqFile(dir, 'b-fine', [2]);
  for (const name of readdirSync(dir)) chownSync(join(dir, name), 65534, 65534);
  chmodSync(join(dir, 'a-locked.jsonl.gz'), 0o000);
  const s3 = await startS3(t);
  const drained = await dlq(['drain'], { ...s3.env, DLQ_DIR: dir }, NOBODY);
  t.equal(drained.code, 0, drained.stderr);
  t.match(drained.stderr, /DLQ file unreadable, moved aside: a-locked\.jsonl\.gz; fix the file's owner, mode or volume/);
  t.match(drained.stdout, /drained 1 files, 1 events; 0 files left/);
  t.ok(existsSync(join(dir, 'corrupt', 'a-locked.jsonl.gz')));
  t.same((await s3.objects()).map((o) => o.key), ['raw/2027/01/15/08/b-fine.jsonl.gz']);
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
  t.match(drained.stderr, `DLQ corrupt/ directory unusable: ${join(dir, 'corrupt')} is a symbolic link`);
  t.match(drained.stderr, /DLQ file corrupt, skipped \(could not move it to corrupt\/\): garbage.jsonl.gz/);
});
