// ACK_LEVEL=disk at length, in `npm run test:ops`: four SIGKILLs of real server processes under
// load at several points, a torn write added between two runs and a kill in the middle of a
// replay, then a clean stop: every 202 in S3 exactly once. Its subject takes time by nature (a
// load long enough for four kill points); npm test keeps the short form in durable-ack.test.ts.
// Also here, for npm test's time: a client that hangs up before its answer, and the WAL volume
// filling up (a real ENOSPC on a 1 MiB tmpfs, where mount is permitted).
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { appendFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { assertExactlyOnce, audit, AckingClient } from '../harness/zero-loss.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { s3Env, startS3 } from '../helpers/s3.js';
import { startInProcess } from '../helpers/in-process.js';
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

for (const level of ['disk', 's3'] as const) {
  t.test(`ACK_LEVEL=${level}: a client that hangs up before its answer is never written to; its events are still stored`, async (t) => {
    const s3 = await startS3(t);
    // A long group window (disk) or batch age (s3) keeps the answer pending while the client goes.
    const server = await startInProcess(t, { ...s3.env, ACK_LEVEL: level, WAL_DIR: tempDir(t, 'wal'), DLQ_DIR: tempDir(t, 'dlq'), WAL_SYNC_INTERVAL_MS: '1000', BATCH_MAX_AGE_MS: level === 's3' ? '1000' : '50' });
    const body = '[{"id":"gone-1"},{"id":"gone-2"}]';
    const socket = net.connect(server.port, '127.0.0.1');
    await once(socket, 'connect');
    socket.write(`POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    await eventually(async () => (await server.metric('channel_events')) > 0 || (await server.metric('upload_inflight_batches')) > 0 || (await server.metric('s3_events_stored_total')) > 0);
    socket.destroy();
    await eventually(async () => (await server.metric('s3_events_stored_total')) === 2, 600);
    t.equal((await server.post('{"id":"after"}')).status, 202, 'the server is still up and answering');
    t.notOk(server.logs.some((l) => l.level === 'error' || l.level === 'fatal'), 'no error logged');
  });
}

/** A real 1 MiB tmpfs for a real ENOSPC, unmounted at the end of the test. */
function smallDisk(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'ingest-wal-tmpfs-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { stdio: 'pipe' });
  t.teardown(() => {
    execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

/** Why the ENOSPC test cannot run here (mount is for root only), or false. */
const cannotMount: string | false = (() => {
  const dir = mkdtempSync(join(tmpdir(), 'ingest-mount-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { stdio: 'pipe' });
    execFileSync('umount', [dir], { stdio: 'pipe' });
    return false;
  } catch (err) {
    return `needs mount -t tmpfs (root) for a real ENOSPC: ${(err as Error).message.split('\n')[0]}`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
})();

t.test('ACK_LEVEL=disk: the WAL volume fills (ENOSPC): every 202 is still uploaded, later requests get 503 not_stored, /readyz 503, the shutdown ends in time', { skip: cannotMount }, async (t) => {
  const walDir = smallDisk(t);
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  // WAL_MAX_BYTES far above the volume: the write fails before the bound refuses anything. One
  // PUT at a time, one batch queued, PUTs stalled during the fill: most acknowledged events wait in
  // the channel, and are cut into many batches after the failure, each cut record then unwritable.
  const server = await startInProcess(t, {
    ...s3Env(proxy.endpoint),
    ACK_LEVEL: 'disk',
    WAL_DIR: walDir,
    DLQ_DIR: tempDir(t, 'dlq'),
    BATCH_MAX_AGE_MS: '300',
    BATCH_MAX_EVENTS: '20',
    UPLOAD_CONCURRENCY: '1',
    UPLOAD_QUEUE_MAX_BATCHES: '1',
    UPLOAD_TIMEOUT_MS: '600000',
    SHUTDOWN_TIMEOUT_MS: '10000',
  });
  proxy.decide = () => 'stall';
  const acked: string[] = [];
  let answer = { status: 202, headers: new Headers(), json: {} as Record<string, unknown> };
  // 3 KB events: the volume fills in about 300 requests.
  for (let i = 0; i < 1000 && answer.status === 202; i++) {
    answer = await server.post(JSON.stringify({ id: `e${i}`, pad: 'x'.repeat(3000) }));
    if (answer.status === 202) acked.push(`e${i}`);
  }
  t.equal(answer.status, 503, `the volume filled after ${acked.length} acknowledged requests`);
  t.equal(await server.metric('wal_write_failures_total'), 1);
  t.ok(server.logs.some((l) => l.level === 'error' && l.msg.startsWith('WAL write failed') && (l.err as { code?: string }).code === 'ENOSPC'), 'the failure is logged with its cause');
  for (const which of ['the request in the failed write', 'a later request']) {
    if (which === 'a later request') answer = await server.post('{"id":"later"}');
    t.same([answer.status, answer.json.error, answer.headers.get('retry-after')], [503, 'not_stored', '1'], `${which}: 503 not_stored, Retry-After: 1`);
  }
  const ready = await fetch(`${server.url}/readyz`);
  t.same([ready.status, ((await ready.json()) as { error: string }).error], [503, 'not_stored'], '/readyz: 503 (the load balancer stops sending here)');
  t.equal((await fetch(`${server.url}/healthz`)).status, 200, '/healthz: still alive (a shutdown, not a kill, ends it)');
  // Events acknowledged before the failure, and batches cut after it, are still uploaded.
  proxy.decide = () => 'pass';
  proxy.release();
  const inS3 = async () => new Set((await s3.objects()).flatMap((o) => o.records.map((r) => r.event.id as string)));
  await eventually(async () => {
    const stored = await inS3();
    return acked.every((id) => stored.has(id));
  }, 400);
  t.pass(`all ${acked.length} acknowledged events are in S3 after the WAL failed`);
  const started = Date.now();
  server.signal('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const exited = await Promise.race([server.exited, new Promise<undefined>((resolve) => (timer = setTimeout(resolve, 20_000, undefined)))]);
  clearTimeout(timer);
  t.same(exited, { code: 0, signal: null }, `the shutdown SIGTERM begins ends (${Date.now() - started} ms)`);
  t.match(await server.waitForLog((l) => l.msg === 'shutdown complete'), { unaccountedEvents: 0, droppedEvents: 0 });
  t.ok(server.logs.some((l) => l.msg === 'WAL closed: every event settled'), 'every event settled');
  t.same(segments(walDir), [], 'a clean stop removes the settled segments: a next start uploads nothing again');
});
