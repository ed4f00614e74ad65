// The DLQ end to end: S3 refusing, erroring or silent sends batches to disk; S3 back: every accepted
// event in S3 exactly once at its original key. Kills, corrupt files, capacity, a failed eviction
// (draining beside a steady load: dlq.ops.test.ts, in test:ops). Servers run in the test's process
// but where they are killed.
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { decodeMeta } from '../../src/dlq/file.js';
import { type FaultProxy, refusedPort, startFaultProxy } from '../helpers/fault-proxy.js';
import { type S3Server, s3Env, startS3 } from '../helpers/s3.js';
import { startInProcess } from '../helpers/in-process.js';
import { eventually, type Served, spawnServer, startServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

const SMALL_BATCHES = { BATCH_MAX_EVENTS: '5', BATCH_MAX_AGE_MS: '50', UPLOAD_MAX_ATTEMPTS: '2', UPLOAD_TIMEOUT_MS: '300', DLQ_REUPLOAD_IDLE_MS: '200' };

/** Posts `count` single events with ids from `from`; returns the ids answered 202. */
async function postIds(server: Served, from: number, count: number): Promise<number[]> {
  const accepted: number[] = [];
  for (let id = from; id < from + count; id++) if ((await server.post(JSON.stringify({ id }))).status === 202) accepted.push(id);
  return accepted;
}

/** Every stored id, and the keys the DLQ files named; fails on a duplicate. */
async function storedIds(t: Test, s3: S3Server): Promise<{ ids: number[]; keys: string[] }> {
  const objects = await s3.objects();
  const ids = objects.flatMap((o) => o.records.map((r) => r.event.id as number)).sort((a, b) => a - b);
  t.equal(new Set(ids).size, ids.length, 'no event stored twice');
  return { ids, keys: objects.map((o) => o.key).sort() };
}

/** Files under a final name; `.tmp-*` files are being written (or were, when a process died). */
function completeFiles(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.endsWith('.jsonl.gz') && !n.startsWith('.tmp-'));
}

function dlqKeys(dir: string): string[] {
  return completeFiles(dir)
    .map((n) => decodeMeta(readFileSync(join(dir, n))).meta.key)
    .sort();
}

async function outageThenRecovery(t: Test, makeDown: (proxy: FaultProxy) => void, extraEnv: Record<string, string> = {}) {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  makeDown(proxy);
  const dlqDir = tempDir(t, 'dlq');
  const server = await startInProcess(t, { ...s3Env(proxy.endpoint), ...SMALL_BATCHES, DLQ_DIR: dlqDir, ...extraEnv });
  const accepted = await postIds(server, 0, 40);
  t.equal(accepted.length, 40);
  await eventually(async () => (await server.metric('dlq_events_spilled_total')) === 40);
  const files = await server.metric('dlq_files_current');
  t.ok(files >= 8, `${files} files in the DLQ`);
  t.equal(await server.metric('dlq_events_current'), 40);
  const spilledKeys = dlqKeys(dlqDir);

  proxy.decide = () => 'pass';
  proxy.release();
  await eventually(async () => (await server.metric('dlq_files_current')) === 0);
  const { ids, keys } = await storedIds(t, s3);
  t.same(ids, accepted, 'every accepted event in S3 exactly once');
  t.same(keys, spilledKeys, 'each at the key its batch had from the start');
  t.equal(await server.metric('dlq_events_reuploaded_total'), 40);
  t.equal(await server.metric('dlq_events_dropped_total', '{reason="capacity"}'), 0);
  t.ok(server.logs.some((l) => /^DLQ → RAW success: raw\/.+ events=\d+$/.test(l.msg)));
  return server;
}

t.test('S3 answering 500 and 503 SlowDown: batches spill, then drain when S3 recovers', async (t) => {
  const server = await outageThenRecovery(t, (proxy) => {
    proxy.decide = ({ attempt }) => (attempt % 2 === 1 ? { status: 500, code: 'InternalError' } : { status: 503, code: 'SlowDown' });
  });
  t.ok((await server.metric('s3_put_errors_total', '{code="SlowDown"}')) > 0);
});

t.test('S3 accepting connections and never answering: attempts time out, batches spill, then drain', async (t) => {
  const server = await outageThenRecovery(t, (proxy) => {
    proxy.decide = () => 'stall';
  });
  t.ok((await server.metric('s3_put_errors_total', '{code="Timeout"}')) > 0);
});

t.test('S3 refusing connections, then coming back at the same address', async (t) => {
  const s3 = await startS3(t);
  const port = await refusedPort();
  const dlqDir = tempDir(t, 'dlq');
  const server = await startInProcess(t, { ...s3Env(`http://127.0.0.1:${port}`), ...SMALL_BATCHES, DLQ_DIR: dlqDir });
  const accepted = await postIds(server, 0, 30);
  await eventually(async () => (await server.metric('dlq_events_spilled_total')) === 30);
  t.ok((await server.metric('s3_put_errors_total', '{code="ECONNREFUSED"}')) > 0);
  const spilledKeys = dlqKeys(dlqDir);
  await startFaultProxy(t, s3, port); // S3 is back
  await eventually(async () => (await server.metric('dlq_files_current')) === 0);
  const { ids, keys } = await storedIds(t, s3);
  t.same(ids, accepted);
  t.same(keys, spilledKeys);
});

t.test('a DLQ directory that cannot be written: error logged, events counted as dropped, the server still answers', async (t) => {
  const parent = tempDir(t, 'notadir');
  writeFileSync(join(parent, 'file'), 'a file where the DLQ directory should be');
  const server = await startInProcess(t, { ...s3Env(`http://127.0.0.1:${await refusedPort()}`), ...SMALL_BATCHES, DLQ_DIR: join(parent, 'file', 'dlq') });
  // One request: its five events are one batch, so one spill, however slow the machine is
  // (five requests could straddle BATCH_MAX_AGE_MS and make two).
  t.equal((await server.post(JSON.stringify([0, 1, 2, 3, 4].map((id) => ({ id }))))).status, 202);
  await eventually(async () => (await server.metric('dlq_events_dropped_total', '{reason="write_failed"}')) === 5);
  await server.waitForLog((l) => l.level === 'error' && /^local DLQ save failed: ENOTDIR/.test(l.msg));
  t.equal(await server.metric('dlq_write_failures_total'), 1);
  t.equal((await server.post('{"id":"still here"}')).status, 202);
  t.equal((await fetch(`${server.url}/healthz`)).status, 200);
});

t.test('DLQ_MAX_FILES full: exactly the evicted events are counted, each eviction logged; the rest drain', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  proxy.decide = () => ({ status: 503, code: 'SlowDown' });
  const dlqDir = tempDir(t, 'dlq');
  const server = await startInProcess(t, { ...s3Env(proxy.endpoint), ...SMALL_BATCHES, BATCH_MAX_EVENTS: '2', DLQ_MAX_FILES: '3', DLQ_DIR: dlqDir, DLQ_REUPLOAD_IDLE_MS: '3600000' });
  // One request, one batch, one DLQ file, in order.
  for (let i = 0; i < 5; i++) {
    t.equal((await server.post(JSON.stringify([{ id: i * 2 }, { id: i * 2 + 1 }]))).status, 202);
    await eventually(async () => (await server.metric('dlq_events_spilled_total')) === (i + 1) * 2);
  }
  // The eviction runs after the spill is counted: wait for it rather than race it.
  await eventually(async () => (await server.metric('dlq_events_dropped_total', '{reason="capacity"}')) === 4);
  t.equal(await server.metric('dlq_files_current'), 3);
  const evictions = server.logs.filter((l) => l.msg.startsWith('DLQ capacity → removed='));
  t.equal(evictions.length, 2);
  t.same(evictions.map((l) => l.events), [2, 2]);
  const kept = dlqKeys(dlqDir);
  t.equal(kept.length, 3);
  await server.stop();

  // Restarted with S3 back: the three kept files drain, and nothing else appears.
  proxy.decide = () => 'pass';
  const again = await startInProcess(t, { ...s3Env(proxy.endpoint), ...SMALL_BATCHES, DLQ_DIR: dlqDir });
  await eventually(async () => (await again.metric('dlq_files_current')) === 0);
  const { ids, keys } = await storedIds(t, s3);
  t.same(ids, [4, 5, 6, 7, 8, 9], 'the newest three batches, and exactly the evicted ones missing');
  t.same(keys, kept);
});

t.test('SIGKILL while spilling a stream of batches: after restart no partial file is uploaded, every complete file is', async (t) => {
  const s3 = await startS3(t);
  const dlqDir = tempDir(t, 'dlq');
  const down = s3Env(`http://127.0.0.1:${await refusedPort()}`);
  const server = await startServer(t, { ...down, ...SMALL_BATCHES, BATCH_MAX_EVENTS: '1', UPLOAD_MAX_ATTEMPTS: '1', UPLOAD_CONCURRENCY: '8', DLQ_DIR: dlqDir, DLQ_REUPLOAD_IDLE_MS: '3600000' });
  // Keep batches coming, and kill the process while it is writing them.
  let posting = true;
  const poster = (async () => {
    for (let id = 0; posting && id < 5000; id += 20) {
      await server.post(JSON.stringify(Array.from({ length: 20 }, (_, i) => ({ id: id + i })))).catch(() => undefined);
    }
  })();
  await eventually(async () => (await server.metric('dlq_files_current')) >= 40);
  server.child.kill('SIGKILL');
  await server.exited;
  posting = false;
  await poster;

  const complete = completeFiles(dlqDir);
  const completeKeys = complete.map((n) => decodeMeta(readFileSync(join(dlqDir, n))).meta.key).sort();
  const completeEvents = complete.reduce((n, name) => n + decodeMeta(readFileSync(join(dlqDir, name))).meta.events, 0);
  t.ok(complete.length >= 40, `${complete.length} complete files, ${readdirSync(dlqDir).filter((n) => n.startsWith('.tmp-')).length} temp files left by the kill`);

  const proxy = await startFaultProxy(t, s3);
  const again = await startInProcess(t, { ...s3Env(proxy.endpoint), DLQ_DIR: dlqDir, DLQ_REUPLOAD_IDLE_MS: '100' });
  await eventually(async () => (await again.metric('dlq_files_current')) === 0, 600);
  t.notOk(readdirSync(dlqDir).some((n) => n.startsWith('.tmp-')), 'temp leftovers removed, never uploaded');
  const { ids, keys } = await storedIds(t, s3);
  t.same(keys, completeKeys, 'exactly the complete files were uploaded');
  t.equal(ids.length, completeEvents);
  t.equal(proxy.puts.length, complete.length, 'one PUT per file');
});

t.test('a corrupt file in the directory is moved aside and counted; the rest drain', async (t) => {
  const s3 = await startS3(t);
  const dlqDir = tempDir(t, 'dlq');
  // A real DLQ from a run with S3 down.
  const first = await startInProcess(t, { ...s3Env(`http://127.0.0.1:${await refusedPort()}`), ...SMALL_BATCHES, DLQ_DIR: dlqDir, DLQ_REUPLOAD_IDLE_MS: '3600000' });
  await postIds(first, 0, 15);
  await eventually(async () => (await first.metric('dlq_events_spilled_total')) === 15);
  await first.stop();
  const files = completeFiles(dlqDir).sort();
  // One file with a flipped byte in its compressed body, one that is not gzip at all.
  const damaged = join(dlqDir, files[0]!);
  const bytes = readFileSync(damaged);
  bytes[bytes.length - 20] = bytes[bytes.length - 20]! ^ 0xff;
  writeFileSync(damaged, bytes);
  writeFileSync(join(dlqDir, '1700000000000-x-000000-00000000.jsonl.gz'), 'garbage');
  const damagedEvents = decodeMeta(bytes).meta.events;

  const again = await startInProcess(t, { ...s3.env, DLQ_DIR: dlqDir, DLQ_REUPLOAD_IDLE_MS: '100' });
  await eventually(async () => (await again.metric('dlq_files_current')) === 0);
  t.equal(await again.metric('dlq_files_corrupt_total'), 2);
  t.ok(existsSync(join(dlqDir, 'corrupt', files[0]!)), 'the damaged file kept aside, not deleted');
  t.ok(existsSync(join(dlqDir, 'corrupt', '1700000000000-x-000000-00000000.jsonl.gz')));
  const { ids } = await storedIds(t, s3);
  t.equal(ids.length, 15 - damagedEvents, 'everything but the damaged file stored');
  t.ok(again.logs.some((l) => l.level === 'error' && l.msg === 'DLQ file moved aside to corrupt/, never uploaded' && l.reason === 'corrupt'));
  copyFileSync(join(dlqDir, 'corrupt', files[0]!), join(tempDir(t, 'inspect'), 'x')); // readable for an operator
});

t.test('a spill whose capacity eviction fails does not kill the server', async (t) => {
  const dlqDir = tempDir(t, 'dlq');
  const server = await startInProcess(t, { ...s3Env(`http://127.0.0.1:${await refusedPort()}`), ...SMALL_BATCHES, BATCH_MAX_EVENTS: '2', UPLOAD_MAX_ATTEMPTS: '1', DLQ_MAX_FILES: '1', DLQ_DIR: dlqDir, DLQ_REUPLOAD_IDLE_MS: '3600000' });
  t.equal((await server.post('[{"id":0},{"id":1}]')).status, 202);
  await eventually(async () => (await server.metric('dlq_events_spilled_total')) === 2);
  // A real fault: the oldest file replaced by a non-empty directory, which no unlink removes.
  const [oldest] = completeFiles(dlqDir);
  rmSync(join(dlqDir, oldest!));
  mkdirSync(join(dlqDir, oldest!, 'inside'), { recursive: true });
  t.equal((await server.post('[{"id":2},{"id":3}]')).status, 202);
  await server.waitForLog((l) => l.msg.startsWith('DLQ file could not be removed') && l.file === oldest); // on main: an unhandled rejection, the process died
  t.equal((await server.post('{"id":4}')).status, 202);
  t.equal((await fetch(`${server.url}/healthz`)).status, 200);
  t.equal(await server.metric('dlq_events_spilled_total'), 4);
  t.ok(server.running(), 'still serving');
});

t.test('restart with a DLQ left by a killed process picks it up and drains it', async (t) => {
  const s3 = await startS3(t);
  const dlqDir = tempDir(t, 'dlq');
  const first = spawnServer(t, { ...s3Env(`http://127.0.0.1:${await refusedPort()}`), ...SMALL_BATCHES, DLQ_DIR: dlqDir });
  const listening = await first.waitForLog((l) => l.msg === 'listening');
  for (let id = 0; id < 10; id++) await fetch(`http://127.0.0.1:${listening.port as number}/v1/events`, { method: 'POST', body: JSON.stringify({ id }), headers: { 'content-type': 'application/json' } });
  await eventually(() => completeFiles(dlqDir).length >= 2);
  await eventually(async () => (await fetch(`http://127.0.0.1:${listening.metricsPort as number}/metrics`).then((r) => r.text())).includes('dlq_events_spilled_total 10'));
  first.child.kill('SIGKILL');
  await first.exited;
  const again = await startInProcess(t, { ...s3.env, DLQ_DIR: dlqDir });
  await again.waitForLog((l) => l.msg.startsWith('DLQ: found files from an earlier run'));
  await eventually(async () => (await again.metric('dlq_files_current')) === 0);
  t.same((await storedIds(t, s3)).ids, Array.from({ length: 10 }, (_, i) => i));
});
