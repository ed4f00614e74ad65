// test:ops: a file that turns unreadable under a running server (as `nobody`, with live traffic for
// several seconds; moved from dlq-startup.test.ts). test/dlq/reupload.test.ts has its backoff in process.
// Permission faults are real: the server runs as `nobody` (root ignores file modes).
import { chmodSync, chownSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { goodFiles } from '../helpers/dlq.js';
import { startS3 } from '../helpers/s3.js';
import { eventually, NOBODY, nobodyCannotRun, nobodyDir, startServer } from '../helpers/server.js';

async function storedIds(s3: Awaited<ReturnType<typeof startS3>>): Promise<number[]> {
  return (await s3.objects()).flatMap((o) => o.records.map((r) => r.event.id as number)).sort((a, b) => a - b);
}

t.test('a file that turns unreadable after start-up backs off alone; the files behind it drain; it goes once readable', { skip: nobodyCannotRun }, async (t) => {
  const s3 = await startS3(t);
  const dir = nobodyDir(t, 'dlq');
  goodFiles(dir);
  for (const name of readdirSync(dir)) chownSync(join(dir, name), 65534, 65534);
  // Idle time never comes (1 h): re-upload starts only once a live upload succeeds.
  const server = await startServer(t, { ...s3.env, DLQ_DIR: dir, DLQ_REUPLOAD_IDLE_MS: '3600000', BATCH_MAX_AGE_MS: '20' }, NOBODY);
  chmodSync(join(dir, 'good-0.jsonl.gz'), 0o000); // the oldest: on main every file waited behind it
  t.equal((await server.post('{"id":1000}')).status, 202);
  await eventually(async () => (await server.metric('dlq_files_current')) === 1);
  t.same(await storedIds(s3), [2, 3, 4, 5, 1000]);
  const readFailures = () => server.logs.filter((l) => l.msg.startsWith('DLQ file could not be read')).length;
  await new Promise((r) => setTimeout(r, 1500));
  // On main: thousands of lines a second at 93% CPU. With backoff (1 s, 2 s, ...): a handful.
  t.ok(readFailures() >= 1 && readFailures() <= 10, `${readFailures()} read failures logged in about 2 s`);
  chmodSync(join(dir, 'good-0.jsonl.gz'), 0o640);
  // Live traffic keeps the way open (idle time never comes here) until the file's backoff ends.
  let live = 1001;
  await eventually(async () => (await server.post(JSON.stringify({ id: live++ }))).status === 202 && (await server.metric('dlq_files_current')) === 0, 300, 100);
  t.same((await storedIds(s3)).filter((id) => id < 1000), [0, 1, 2, 3, 4, 5]);
});
