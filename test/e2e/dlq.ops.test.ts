// test:ops: the DLQ draining beside a steady live load (about 10 s of load; moved from dlq.test.ts).
// Real server processes, a real S3 server, every accepted event checked in S3 exactly once.
import t, { type Test } from 'tap';
import { refusedPort } from '../helpers/fault-proxy.js';
import { type S3Server, s3Env, startS3 } from '../helpers/s3.js';
import { eventually, startServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

const SMALL_BATCHES = { BATCH_MAX_EVENTS: '5', BATCH_MAX_AGE_MS: '50', UPLOAD_MAX_ATTEMPTS: '2', UPLOAD_TIMEOUT_MS: '300', DLQ_REUPLOAD_IDLE_MS: '200' };

/** Every stored id, and the keys the DLQ files named; fails on a duplicate. */
async function storedIds(t: Test, s3: S3Server): Promise<{ ids: number[]; keys: string[] }> {
  const objects = await s3.objects();
  const ids = objects.flatMap((o) => o.records.map((r) => r.event.id as number)).sort((a, b) => a - b);
  t.equal(new Set(ids).size, ids.length, 'no event stored twice');
  return { ids, keys: objects.map((o) => o.key).sort() };
}

t.test('under steady live load with S3 healthy, the DLQ drains while traffic continues', async (t) => {
  const s3 = await startS3(t);
  const dlqDir = tempDir(t, 'dlq');
  const first = await startServer(t, { ...s3Env(`http://127.0.0.1:${await refusedPort()}`), ...SMALL_BATCHES, UPLOAD_MAX_ATTEMPTS: '1', DLQ_DIR: dlqDir, DLQ_REUPLOAD_IDLE_MS: '3600000' });
  const FILES = 100;
  for (let i = 0; i < FILES; i++) await first.post(JSON.stringify(Array.from({ length: 5 }, (_, j) => ({ id: i * 5 + j }))));
  await eventually(async () => (await first.metric('dlq_events_spilled_total')) === FILES * 5);
  await first.stop();

  // A batch every 20 ms: on main the loop was never idle for DLQ_REUPLOAD_IDLE_MS and the DLQ sat there.
  const server = await startServer(t, { ...s3.env, BATCH_MAX_AGE_MS: '20', DLQ_DIR: dlqDir, DLQ_REUPLOAD_IDLE_MS: '1000' });
  const started = Date.now();
  let drainedAt: number | undefined;
  let liveEvents = 0;
  let id = 100_000;
  // A bounded client loop: 50-event requests back to back, until the DLQ is empty or 60 s pass.
  const watcher = eventually(async () => (await server.metric('dlq_files_current')) === 0, 600, 100).then(() => (drainedAt = Date.now()));
  while (drainedAt === undefined && Date.now() - started < 60_000) {
    const events = Array.from({ length: 50 }, () => ({ id: id++ }));
    if ((await server.post(JSON.stringify(events))).status === 202) liveEvents += 50;
  }
  await watcher;
  const seconds = (drainedAt! - started) / 1000;
  const liveDuring = await server.metric('s3_events_stored_total');
  t.ok(liveDuring > 0, `${liveDuring} live events stored while the DLQ drained`);
  t.comment(`drained ${FILES} files (${FILES * 5} events) in ${seconds.toFixed(1)} s = ${(FILES / seconds).toFixed(0)} files/s, under ${(liveEvents / seconds).toFixed(0)} live events/s`);
  await eventually(async () => (await server.metric('s3_events_stored_total')) === liveEvents);
  const { ids } = await storedIds(t, s3);
  t.equal(ids.length, FILES * 5 + liveEvents, 'every DLQ event and every live event stored once');
});
