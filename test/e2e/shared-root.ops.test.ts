// test:ops: DURABLE_ROOT with several server processes, killed, paused and refused their lease
// under load (moved from durable-ack.test.ts). test/wal/adopt.test.ts and test/wal/lease.test.ts
// have the adopter and the lease in process.
// Real server processes (a lost lease exits the process), a real S3 server, real SIGKILL and SIGSTOP;
// bounded in requests.
import { chmodSync, chownSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { assertExactlyOnce, audit, AckingClient } from '../harness/zero-loss.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { s3Env, startS3 } from '../helpers/s3.js';
import { eventually, killed, NOBODY, nobodyCannotRun, startServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

t.test('shared root: two servers, one SIGKILLed under load; the survivor adopts its directory; every 202 of both in S3 exactly once', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  proxy.decide = () => ({ delayMs: 40 });
  const root = tempDir(t, 'root');
  const common = { ...s3Env(proxy.endpoint), ACK_LEVEL: 'disk', DURABLE_ROOT: root, DURABLE_LEASE_STALE_MS: '3000', BATCH_MAX_AGE_MS: '150', BATCH_MAX_EVENTS: '300', WAL_SEGMENT_BYTES: '65536', DLQ_REUPLOAD_IDLE_MS: '100' };
  const a = await startServer(t, { ...common, INSTANCE_ID: 'a' });
  const b = await startServer(t, { ...common, INSTANCE_ID: 'b' });
  t.ok(existsSync(join(root, 'a', 'lease')) && existsSync(join(root, 'b', 'wal')), 'each under its own directory, with a lease');
  const toA = new AckingClient({ url: a.url, concurrency: 4, eventsPerRequest: 10, maxRequests: 1000, padBytes: 100 });
  const toB = new AckingClient({ url: b.url, concurrency: 2, eventsPerRequest: 10, maxRequests: 300, padBytes: 100, paceMs: 5 });
  const loadA = toA.run();
  const loadB = toB.run();
  await eventually(() => toA.acked.size >= 1000, 600);
  // From now on a's PUTs hang: its WAL fills with acknowledged events S3 never gets from it.
  proxy.decide = ({ key }) => (/\/\d+-a-/.test(key) ? 'stall' : { delayMs: 40 });
  await eventually(() => toA.acked.size >= 2500, 600);
  toA.retarget(undefined);
  await killed(t, a);
  toA.stop();
  await loadA;
  // The PUTs a left hanging are never forwarded; the survivor's go through.
  proxy.decide = () => ({ delayMs: 40 });
  const adopted = await b.waitForLog((l) => l.msg === 'adopted and removed the directory of a dead instance' && l.dead === 'a');
  t.ok(adopted, 'the survivor adopted a');
  t.notOk(existsSync(join(root, 'a')), "a's directory is removed");
  t.equal(await b.metric('wal_adopted_dirs_total'), 1);
  t.ok((await b.metric('wal_replayed_events_total')) > 0, 'it replayed events from a');
  await loadB;
  b.child.kill('SIGTERM');
  t.same(await b.exited, { code: 0, signal: null });
  assertExactlyOnce(t, await audit(toA, s3), 'the dead instance');
  assertExactlyOnce(t, await audit(toB, s3), 'the survivor');
});

t.test('shared root: an instance paused (SIGSTOP) and resumed while a survivor adopts its directory acknowledges nothing more, and every 202 it gave is in S3', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  // a's own PUTs hang: what it acknowledges stays in its WAL only.
  proxy.decide = ({ key }) => (/\/\d+-a-/.test(key) ? 'stall' : 'pass');
  const root = tempDir(t, 'root');
  const common = { ...s3Env(proxy.endpoint), ACK_LEVEL: 'disk', DURABLE_ROOT: root, DURABLE_LEASE_STALE_MS: '2000', BATCH_MAX_AGE_MS: '100', BATCH_MAX_EVENTS: '100' };
  const a = await startServer(t, { ...common, INSTANCE_ID: 'a' });
  const b = await startServer(t, { ...common, INSTANCE_ID: 'b' });
  const before = new AckingClient({ url: a.url, concurrency: 2, eventsPerRequest: 10, maxRequests: 20 });
  await before.run();
  t.equal(before.acked.size, 200, 'a acknowledged 200 events before its pause');
  a.child.kill('SIGSTOP');
  // The survivor's PUTs are slow, so its adoption of a lasts while a is running again.
  proxy.decide = () => ({ delayMs: 2500 });
  await b.waitForLog((l) => l.msg.startsWith('adopting the directory of a dead instance') && l.dead === 'a');
  a.child.kill('SIGCONT');
  const after = new AckingClient({ url: a.url, concurrency: 2, eventsPerRequest: 10, maxRequests: 40 });
  await after.run();
  t.equal(after.acked.size, 0, `resumed mid-adoption, a acknowledged nothing more (${after.acked.size} events)`);
  t.equal((await a.exited).code, 1, 'a exits once it finds its lease taken');
  t.ok(a.logs.some((l) => /^lease (lost|not renewed)/.test(l.msg)), 'saying why');
  await b.waitForLog((l) => l.msg === 'adopted and removed the directory of a dead instance' && l.dead === 'a');
  proxy.decide = () => 'pass';
  await eventually(async () => (await b.metric('upload_inflight_batches')) === 0 && (await b.metric('channel_events')) === 0, 600);
  const report = await audit(before, s3);
  t.same(report.missing.slice(0, 5), [], `every 202 a gave before its pause is in S3 (${report.missing.length} missing)`);
});

t.test('shared root: a lease that cannot be read for a while (EACCES, server not root) is a failed renewal, not a lost lease: the instance keeps serving', { skip: nobodyCannotRun }, async (t) => {
  const s3 = await startS3(t);
  const root = tempDir(t, 'root');
  chownSync(root, 65534, 65534);
  // Renewed every 1.5 s; the fencing stops it only after 6 s without a renewal.
  const a = await startServer(t, { ...s3.env, ACK_LEVEL: 'disk', DURABLE_ROOT: root, DURABLE_LEASE_STALE_MS: '12000', INSTANCE_ID: 'a' }, NOBODY);
  const lease = join(root, 'a', 'lease');
  chmodSync(lease, 0o000); // as a read error of the file system would (EIO, ESTALE on EFS)
  await a.waitForLog((l) => l.msg === 'lease could not be renewed; trying again');
  chmodSync(lease, 0o644);
  const restored = statSync(lease).mtimeMs;
  await eventually(() => statSync(lease).mtimeMs > restored, 200, 50);
  t.equal((await a.post('{"id":1}')).status, 202, 'renewed, it acknowledges again');
  t.notOk(a.logs.some((l) => l.msg.startsWith('lease lost')), 'never taken for a lost lease');
  t.equal(a.child.exitCode, null, 'still running');
});
