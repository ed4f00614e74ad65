// The dlq command as a process (src/dlq/cli.ts): its exit codes, and what only a process of its
// own can show: the working directory local mode writes under, and another user's permissions.
// Everything else about the command runs in process: test/dlq/command.test.ts.
import { chmodSync, chownSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { runDlqCommand, T0, writeDlqFile } from '../helpers/dlq.js';
import { startS3 } from '../helpers/s3.js';
import { NOBODY, nobodyCannotRun, type RunAs } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

const dlq = (args: string[], env: Record<string, string>, runAs: RunAs = {}) => runDlqCommand(t, args, env, runAs);

t.test('the exit code is the command\'s: 2 for a usage error, 0 for --help, 1 for a bad configuration', async (t) => {
  const none = await dlq([], {});
  t.equal(none.code, 2);
  t.match(none.stderr, /^no command given\nusage: npm run dlq -- <command>/);
  const help = await dlq(['--help'], {});
  t.equal(help.code, 0);
  t.match(help.stdout, /usage: npm run dlq -- <command>/);
  const bad = await dlq(['stats'], { DLQ_MAX_FILES: 'many' });
  t.equal(bad.code, 1);
  t.match(bad.stderr, /^invalid configuration: "DLQ_MAX_FILES"/);
});

t.test('drain with S3_BUCKET unset says LOCAL MODE first, as the server does, and drains into ./data/s3', async (t) => {
  const dir = tempDir(t, 'dlq');
  writeDlqFile(dir, `${T0}-a-local`, [1]);
  const drained = await dlq(['drain'], { DLQ_DIR: dir });
  t.equal(drained.code, 0, drained.stderr);
  const first = JSON.parse(drained.stderr.split('\n')[0]!) as { level: string; msg: string };
  t.equal(first.level, 'warn');
  t.match(first.msg, /^LOCAL MODE: S3_BUCKET is not set, so drained files go to an embedded S3-compatible server with data under \.\/data\/s3\. Not for production: set S3_BUCKET\.$/);
  t.match(drained.stdout, /drained 1 files, 1 events; 0 files left/);
  const stats = await dlq(['stats'], { DLQ_DIR: dir });
  t.notMatch(stats.stderr, /LOCAL MODE/, 'stats and list do not touch S3, so they do not say it');
});

t.test('drain sets a file it cannot read aside (EACCES, run as nobody) and drains the rest', { skip: nobodyCannotRun }, async (t) => {
  const dir = tempDir(t, 'dlq');
  chownSync(dir, 65534, 65534);
  writeDlqFile(dir, `${T0}-a-locked`, [1]);
  writeDlqFile(dir, `${T0}-b-fine`, [2]);
  for (const name of readdirSync(dir)) chownSync(join(dir, name), 65534, 65534);
  chmodSync(join(dir, `${T0}-a-locked.jsonl.gz`), 0o000);
  const s3 = await startS3(t);
  const drained = await dlq(['drain'], { ...s3.env, DLQ_DIR: dir }, NOBODY);
  t.equal(drained.code, 0, drained.stderr);
  t.match(drained.stderr, /"reason":"unreadable","err":\{"type":"Error","message":"EACCES[^"]*","stack":/);
  t.match(drained.stderr, `"file":"${T0}-a-locked.jsonl.gz"`);
  t.match(drained.stdout, /drained 1 files, 1 events; 0 files left/);
  t.ok(existsSync(join(dir, 'corrupt', `${T0}-a-locked.jsonl.gz`)));
  t.same((await s3.objects()).map((o) => o.key), [`raw/2027/01/15/08/${T0}-b-fine.jsonl.gz`]);
});

