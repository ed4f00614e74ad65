// The real server starting on a DLQ_DIR that holds what a kept volume can hold: it starts, serves,
// re-uploads the good files, and skips or sets aside the rest (counted, logged). Then an unreadable
// file during re-upload: it backs off alone, the files behind it drain. Permission faults are real:
// the server runs as `nobody` (root ignores file modes).
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { dlqCommand, dlqFileWithMeta, goodFiles, writeDlqFile } from '../helpers/dlq.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { startS3 } from '../helpers/s3.js';
import { startInProcess } from '../helpers/in-process.js';
import { eventually, NOBODY, nobodyCannotRun, nobodyDir, spawnServer, startServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

async function storedIds(s3: Awaited<ReturnType<typeof startS3>>): Promise<number[]> {
  return (await s3.objects()).flatMap((o) => o.records.map((r) => r.event.id as number)).sort((a, b) => a - b);
}

t.test('odd entries in DLQ_DIR: the server starts, serves, re-uploads the good files, never the crafted key', async (t) => {
  const s3 = await startS3(t);
  const dir = tempDir(t, 'dlq');
  const keys = goodFiles(dir);
  mkdirSync(join(dir, 'dir.jsonl.gz'));
  symlinkSync(join(dir, 'nowhere'), join(dir, 'dangling.jsonl.gz'));
  mkdirSync(join(dir, '.tmp-dir'));
  execFileSync('mkfifo', [join(dir, 'fifo.jsonl.gz')]); // hung start-up on main
  writeFileSync(join(dir, 'short.jsonl.gz'), 'x');
  writeDlqFile(dir, 'evil', [100], 'evil/../outside-prefix/evil.jsonl.gz'); // uploaded there on main
  writeDlqFile(dir, 'dotdot', [101], 'raw/../../outside-prefix/dotdot.jsonl.gz');
  const server = await startInProcess(t, { ...s3.env, DLQ_DIR: dir, DLQ_REUPLOAD_IDLE_MS: '100', BATCH_MAX_AGE_MS: '50' });
  t.equal((await server.post('{"id":1000}')).status, 202);
  await eventually(async () => (await server.metric('dlq_files_current')) === 0 && (await server.metric('s3_events_stored_total')) === 1);
  t.same(await storedIds(s3), [0, 1, 2, 3, 4, 5, 1000]);
  t.same((await s3.objects()).map((o) => o.key).filter((k) => !k.includes('/good-')).length, 1, 'only the live object besides the good files');
  t.ok(keys.every((k) => k.startsWith('raw/')));
  t.equal(await server.metric('dlq_files_rejected_total', '{reason="not_regular"}'), 4);
  t.equal(await server.metric('dlq_files_rejected_total', '{reason="bad_key"}'), 2);
  t.equal(await server.metric('dlq_files_corrupt_total'), 1);
  for (const name of ['evil.jsonl.gz', 'dotdot.jsonl.gz', 'short.jsonl.gz']) t.ok(existsSync(join(dir, 'corrupt', name)), `${name} in corrupt/`);
  t.ok(server.logs.some((l) => l.msg === 'DLQ file moved aside to corrupt/, never uploaded' && l.reason === 'bad_key' && l.file === 'evil.jsonl.gz'));
});

t.test('a regular file named `corrupt` in DLQ_DIR: the good files are still found and re-uploaded', async (t) => {
  const s3 = await startS3(t);
  const dir = tempDir(t, 'dlq');
  goodFiles(dir);
  writeFileSync(join(dir, 'corrupt'), 'not a directory');
  const server = await startInProcess(t, { ...s3.env, DLQ_DIR: dir, DLQ_REUPLOAD_IDLE_MS: '100' });
  await eventually(async () => (await server.metric('dlq_files_current')) === 0);
  t.same(await storedIds(s3), [0, 1, 2, 3, 4, 5], 'on main the DLQ looked empty and nothing was re-uploaded');
  t.ok(server.logs.some((l) => l.msg.startsWith('DLQ corrupt/ directory unusable')));
});

t.test('DLQ_DIR/corrupt a symlink to another directory: the server moves nothing out of DLQ_DIR, says why, and re-uploads the good files', async (t) => {
  const s3 = await startS3(t);
  const dir = tempDir(t, 'dlq');
  const elsewhere = tempDir(t, 'elsewhere'); // on a shared EFS root: any instance's directory
  goodFiles(dir);
  symlinkSync(elsewhere, join(dir, 'corrupt'));
  writeFileSync(join(dir, 'garbage.jsonl.gz'), 'not gzip');
  const server = await startInProcess(t, { ...s3.env, DLQ_DIR: dir, DLQ_REUPLOAD_IDLE_MS: '100' });
  await eventually(async () => (await server.metric('dlq_files_current')) === 0);
  t.same(await storedIds(s3), [0, 1, 2, 3, 4, 5]);
  t.same(readdirSync(elsewhere), [], 'on main garbage.jsonl.gz was moved into the link\'s target');
  t.ok(existsSync(join(dir, 'garbage.jsonl.gz')), 'kept in place, skipped');
  t.equal(await server.metric('dlq_files_corrupt_total'), 1);
  t.ok(server.logs.some((l) => l.level === 'error' && l.msg.startsWith('DLQ corrupt/ directory unusable') && (l.err as { message: string }).message.startsWith(`${join(dir, 'corrupt')} is a symbolic link`)));
});

t.test('an unreadable file at start-up (EACCES, server not root) is moved aside with what to do; the rest drain', { skip: nobodyCannotRun }, async (t) => {
  const s3 = await startS3(t);
  const dir = nobodyDir(t, 'dlq');
  goodFiles(dir);
  writeDlqFile(dir, 'locked', [200]);
  for (const name of readdirSync(dir)) chownSync(join(dir, name), 65534, 65534);
  chmodSync(join(dir, 'locked.jsonl.gz'), 0o000); // as after a UID change on a kept volume
  const server = await startServer(t, { ...s3.env, DLQ_DIR: dir, DLQ_REUPLOAD_IDLE_MS: '100' }, NOBODY);
  await eventually(async () => (await server.metric('dlq_files_current')) === 0);
  t.same(await storedIds(s3), [0, 1, 2, 3, 4, 5]);
  t.equal(await server.metric('dlq_files_rejected_total', '{reason="unreadable"}'), 1);
  t.ok(existsSync(join(dir, 'corrupt', 'locked.jsonl.gz')));
  t.ok(server.logs.some((l) => l.msg === 'DLQ file moved aside to corrupt/, never uploaded' && l.reason === 'unreadable' && l.file === 'locked.jsonl.gz' && String(l.todo).startsWith('fix the file')));
});

t.test('a file whose header metadata is JSON null: set aside; the server keeps the lock and re-uploads the rest', async (t) => {
  const s3 = await startS3(t);
  const dir = tempDir(t, 'dlq');
  goodFiles(dir);
  writeFileSync(join(dir, 'null-meta.jsonl.gz'), dlqFileWithMeta('null'));
  const env = { ...s3.env, DLQ_DIR: dir, DLQ_REUPLOAD_IDLE_MS: '3600000' };
  const server = await startInProcess(t, env);
  t.equal(await server.metric('dlq_files_current'), 3, 'on main: 0, the whole DLQ ignored');
  t.equal(await server.metric('dlq_files_corrupt_total'), 1);
  t.ok(existsSync(join(dir, 'corrupt', 'null-meta.jsonl.gz')));
  const second = spawnServer(t, { ...env, INSTANCE_ID: 'second' });
  t.equal((await second.exited).code, 1, 'a second server is refused: on main it started on the same directory');
  t.match((await dlqCommand(['stats'], { DLQ_DIR: dir })).stdout, /^files\s+3$/m);
});

t.test('a file S3 always refuses, on an idle server, backs off alone: the files behind it are re-uploaded', async (t) => {
  const s3 = await startS3(t);
  // Injected on the wire (a real HTTP 403 from the test proxy): S3 cannot be made to refuse one key.
  const proxy = await startFaultProxy(t, s3);
  proxy.decide = ({ key }) => (key.includes('/good-0.') ? { status: 403, code: 'AccessDenied' } : 'pass');
  const dir = tempDir(t, 'dlq');
  goodFiles(dir);
  const server = await startInProcess(t, { ...s3.env, S3_ENDPOINT: proxy.endpoint, UPLOAD_MAX_ATTEMPTS: '1', DLQ_DIR: dir, DLQ_REUPLOAD_IDLE_MS: '100' });
  // On main good-0 was retried at every global backoff, oldest first, and nothing behind it moved.
  await eventually(async () => (await server.metric('dlq_files_current')) === 1, 200, 100);
  t.same(await storedIds(s3), [2, 3, 4, 5]);
  t.same(proxy.puts.slice(0, 3).map((p) => p.key.split('/').pop()), ['good-0.jsonl.gz', 'good-1.jsonl.gz', 'good-2.jsonl.gz'], 'once the pause ends, the files behind it go first');
  t.ok(server.logs.some((l) => l.msg === 'DLQ re-upload failed; file kept' && (l.fileBackoffMs as number) >= 1000));
});
