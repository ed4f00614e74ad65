// ACK_LEVEL=disk at length, in `npm run test:ops`: four SIGKILLs of real server processes under
// load at several points, a torn write added between two runs and a kill in the middle of a
// replay, then a clean stop: every 202 in S3 exactly once. Its subject takes time by nature (a
// load long enough for four kill points); npm test keeps the short form in durable-ack.test.ts.
import { appendFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { assertExactlyOnce, audit, AckingClient } from '../harness/zero-loss.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { s3Env, startS3 } from '../helpers/s3.js';
import { eventually, killed, spawnServer, startServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

const segments = (dir: string) => readdirSync(dir).filter((n) => n.endsWith('.wal')).sort();

t.test('ACK_LEVEL=disk: SIGKILL under load at several points, a torn tail, a kill during replay: every 202 in S3 exactly once', async (t) => {
  const s3 = await startS3(t);
  // Slow PUTs: each kill finds batches in flight, some already stored and not yet marked done.
  const proxy = await startFaultProxy(t, s3);
  proxy.decide = () => ({ delayMs: 40 });
  const walDir = tempDir(t, 'wal');
  const dlqDir = tempDir(t, 'dlq');
  const env = {
    ...s3Env(proxy.endpoint),
    ACK_LEVEL: 'disk',
    WAL_DIR: walDir,
    DLQ_DIR: dlqDir,
    INSTANCE_ID: 'durable',
    BATCH_MAX_AGE_MS: '150',
    BATCH_MAX_EVENTS: '300',
    // Small segments: rotation and checkpoints happen many times in the run.
    WAL_SEGMENT_BYTES: '65536',
  };
  const client = new AckingClient({ url: undefined, concurrency: 8, eventsPerRequest: 10, maxRequests: 4000, padBytes: 100 });
  const load = client.run();
  let replays = 0;
  let resent = 0;
  // Kill points in acknowledged events; the moment inside each is wherever the load is then.
  for (const [n, point] of [400, 1500, 3000, 6000].entries()) {
    const server = await startServer(t, env);
    // A kill can tear a real write too; the one made below must be cut on the next start.
    if (n === 2) t.ok((await server.metric('wal_torn_tails_total')) >= 1, 'the torn tail was cut');
    const replay = server.logs.find((l) => l.msg.startsWith('WAL: replaying'));
    if (replay !== undefined) {
      replays++;
      resent += replay.batches as number;
    }
    client.retarget(server.url);
    await eventually(() => client.acked.size >= point, 600);
    client.retarget(undefined);
    await killed(t, server);
    if (n === 1) {
      // A write the kill tore: a record header promising more bytes than follow.
      const last = segments(walDir).at(-1)!;
      const torn = Buffer.alloc(20, 0x61);
      torn.writeUInt32LE(5000, 0);
      appendFileSync(join(walDir, last), torn);
    }
    if (n === 2) {
      // Killed again in the middle of its replay, before it listens.
      const replaying = spawnServer(t, env);
      await replaying.waitForLog((l) => l.msg.startsWith('WAL: replaying'));
      await killed(t, replaying);
    }
  }
  const last = await startServer(t, env);
  client.retarget(last.url);
  const before = client.acked.size;
  await eventually(() => client.acked.size >= before + 300, 600);
  client.stop();
  await load;
  last.child.kill('SIGTERM');
  t.same(await last.exited, { code: 0, signal: null });
  t.match(await last.waitForLog((l) => l.msg === 'shutdown complete'), { unaccountedEvents: 0, droppedEvents: 0, spilledEvents: 0 });
  t.ok(last.logs.some((l) => l.msg === 'WAL closed: every event settled'));
  t.ok(replays >= 2, `runs that replayed events of a killed one: ${replays}`);
  t.ok(resent > 0, `batches cut before a kill and PUT again under their keys: ${resent}`);
  t.same(segments(walDir), [], 'the WAL is empty after a clean stop');
  t.same(readdirSync(dlqDir).filter((n) => n.endsWith('.jsonl.gz')), [], 'nothing spilled');
  assertExactlyOnce(t, await audit(client, s3), 'after four SIGKILLs');
});
