// One process per DLQ_DIR, with real processes: a second server refuses to start and names the
// holder; `dlq stats|list` work beside a server, `dlq drain` refuses; a SIGKILLed holder's lock is
// taken over; a server that exits releases it.
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { dlqCommand as dlq, T0, writeDlqFile } from '../helpers/dlq.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { s3Env, startS3 } from '../helpers/s3.js';
import { eventually, spawnServer, startServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

t.test('a second server on the same DLQ_DIR refuses to start, naming the holder; the CLI reads but does not drain', async (t) => {
  const s3 = await startS3(t);
  const dir = tempDir(t, 'dlq');
  // Idle time never comes, nothing live: the file stays for the CLI to see.
  const env = { ...s3.env, DLQ_DIR: dir, DLQ_REUPLOAD_IDLE_MS: '3600000', INSTANCE_ID: 'first-task' };
  writeDlqFile(dir, `${T0}-queued`, [1, 2, 3]); // a batch id: `dlq drain` uploads only keys this server makes
  const first = await startServer(t, env);

  const second = spawnServer(t, { ...env, INSTANCE_ID: 'second-task' });
  const exit = await second.exited;
  t.equal(exit.code, 1, 'refused: on main it started and both re-uploaded the same files');
  const refusal = second.logs.find((l) => l.level === 'fatal');
  t.equal(refusal?.msg, 'DLQ_DIR is in use by another process: one process per DLQ directory');
  t.match((refusal?.err as { message?: string } | undefined)?.message, new RegExp(`^DLQ_DIR ${dir} is in use by pid ${first.child.pid} on host \\S+ \\(instance first-task\\) since `));

  const stats = await dlq(['stats'], { DLQ_DIR: dir });
  t.equal(stats.code, 0);
  t.match(stats.stdout, /^files\s+1$/m);
  t.match((await dlq(['list'], { DLQ_DIR: dir })).stdout, `key=raw/2027/01/15/08/${T0}-queued.jsonl.gz`);
  const drain = await dlq(['drain'], { ...s3.env, DLQ_DIR: dir });
  t.equal(drain.code, 1);
  t.match(drain.stderr, new RegExp(`is in use by pid ${first.child.pid} on host \\S+ \\(instance first-task\\)`));
  t.equal((await s3.objects()).length, 0, 'drain uploaded nothing');

  t.equal((await first.post('{"id":1}')).status, 202, 'the holder serves on');
  t.equal((await first.stop()).code, 0);
  t.notOk(existsSync(join(dir, '.lock')), 'released on exit');
  const drained = await dlq(['drain'], { ...s3.env, DLQ_DIR: dir });
  t.equal(drained.code, 0, drained.stderr);
  t.match(drained.stdout, /drained 1 files, 3 events/);
  t.notOk(existsSync(join(dir, '.lock')), 'drain releases it too');
});

t.test("a SIGKILLed holder's lock is stale: the next server takes it over and drains the DLQ", async (t) => {
  const s3 = await startS3(t);
  const dir = tempDir(t, 'dlq');
  writeDlqFile(dir, 'queued', [1, 2, 3]);
  const first = await startServer(t, { ...s3.env, DLQ_DIR: dir, DLQ_REUPLOAD_IDLE_MS: '3600000' });
  first.child.kill('SIGKILL');
  await first.exited;
  t.ok(existsSync(join(dir, '.lock')), 'left behind by the kill');
  const again = await startServer(t, { ...s3.env, DLQ_DIR: dir, DLQ_REUPLOAD_IDLE_MS: '100' });
  await eventually(async () => (await again.metric('dlq_files_current')) === 0);
  t.equal((await s3.objects()).length, 1);
});

t.test('files another process drains from under a running server (its lock removed by hand) leave its DLQ gauges true, and are counted', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  proxy.decide = () => ({ status: 500, code: 'InternalError' }); // S3 refuses the server, not the drain
  const dir = tempDir(t, 'dlq');
  const server = await startServer(t, { ...s3Env(proxy.endpoint), DLQ_DIR: dir, BATCH_MAX_EVENTS: '2', BATCH_MAX_AGE_MS: '50', UPLOAD_MAX_ATTEMPTS: '1' });
  for (let i = 0; i < 3; i++) t.equal((await server.post(JSON.stringify([{ id: 2 * i }, { id: 2 * i + 1 }]))).status, 202);
  await eventually(async () => (await server.metric('dlq_files_current')) === 3);
  // An operator who took this task for dead: removes its lock, drains the directory to S3.
  rmSync(join(dir, '.lock'));
  const drained = await dlq(['drain'], { ...s3.env, DLQ_DIR: dir });
  t.equal(drained.code, 0, drained.stderr);
  t.match(drained.stdout, /drained 3 files, 6 events/);
  // The server sees the files gone at its next sweep (30 s) or its next try of one of them.
  await eventually(async () => (await server.metric('dlq_files_current')) === 0, 800);
  t.equal(await server.metric('dlq_events_current'), 0);
  t.equal(await server.metric('dlq_bytes_current'), 0);
  t.equal(await server.metric('dlq_oldest_age_seconds'), 0);
  // spilled = reuploaded + dropped + taken + current: the accounting holds without this server's re-uploads.
  t.equal(await server.metric('dlq_events_spilled_total'), 6);
  t.equal(await server.metric('dlq_events_reuploaded_total'), 0);
  t.equal(await server.metric('dlq_events_taken_total'), 6);
  t.ok(server.logs.some((l) => l.level === 'warn' && l.msg.startsWith('DLQ file removed by another process') && /\.jsonl\.gz$/.test(String(l.file)) && l.events === 2), 'and says so');
  t.equal((await s3.objects()).length, 3, 'the drain stored them');
});
