// startPipeline, the one place a pipeline is built, at each ACK_LEVEL with a WAL directory of the
// test's own and a real S3-compatible server: at memory and s3 the WAL settings are left alone; at
// disk the directory is taken (locked until closeWal), what it holds unsettled is in the pipeline
// before startPipeline resolves (counted and logged), and the lease's freshness decides the answer.
import { existsSync, mkdirSync, readdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import t, { type Test } from 'tap';
import type { Outcome } from '../src/acks.js';
import type { AckLevel } from '../src/config.js';
import { SymlinkRefused } from '../src/disk/disk.js';
import { createUploadMetrics } from '../src/metrics/upload.js';
import { createWalMetrics } from '../src/metrics/wal.js';
import { S3Uploader } from '../src/upload/s3.js';
import { WriteAheadLog } from '../src/wal/log.js';
import { recover, WalLocked } from '../src/wal/replay.js';
import { type PipelineSpec, startPipeline } from '../src/wiring.js';
import { entry, pipelineOptions } from './helpers/pipeline.js';
import { BUCKET, type S3Server, startS3 } from './helpers/s3.js';
import type { LogLine } from './helpers/server.js';
import { tempDir } from './helpers/temp.js';

const never = new Promise<void>(() => {});
const silent = pino({ level: 'silent' });
const WAL = { maxBytes: 1 << 24, syncIntervalMs: 0, syncBytes: 1 << 20, segmentBytes: 1 << 20, holder: 'unit' };

async function parts(t: Test) {
  const s3 = await startS3(t);
  const metrics = createUploadMetrics(new Registry());
  const uploader = new S3Uploader(s3.client, { bucket: BUCKET, maxAttempts: 1, timeoutMs: 2000 }, metrics, silent);
  const logs: LogLine[] = [];
  const log = pino({ formatters: { level: (label) => ({ level: label }) } }, { write: (text: string) => logs.push(JSON.parse(text) as LogLine) });
  const walRegistry = new Registry();
  const walMetrics = createWalMetrics(walRegistry);
  const spec = (ackLevel: AckLevel, dir: string, more: Partial<PipelineSpec> = {}): PipelineSpec => ({ options: pipelineOptions(3), ackLevel, ackTimeoutMs: 60_000, wal: { ...WAL, dir, metrics: walMetrics }, fresh: () => true, ...more });
  const deps = { uploader, spill: { save: () => Promise.resolve(true), full: false }, metrics, log };
  return { s3, logs, walRegistry, spec, deps };
}

/** The answers given later, and a wait for the n-th. */
function answers() {
  const later: Outcome[] = [];
  let wake = (): void => {};
  return {
    later,
    answer: (outcome: Outcome) => (later.push(outcome), wake()),
    async count(n: number) {
      while (later.length < n) await new Promise<void>((resolve) => (wake = resolve));
    },
  };
}

const stored = async (s3: S3Server) => (await s3.objects()).flatMap((o) => o.records.map((r) => r.event));

t.test('memory and s3: no write-ahead log, and its directory is not even created', async (t) => {
  const { s3, spec, deps } = await parts(t);
  for (const [ackLevel, first] of [['memory', 'accepted'], ['s3', 'pending']] as const) {
    const dir = join(tempDir(t, 'wal'), 'never');
    const running = await startPipeline(spec(ackLevel, dir), deps);
    t.equal(running.wal, undefined, `${ackLevel}: no log`);
    const a = answers();
    t.equal(running.pipeline.accept(entry(`{"level":"${ackLevel}"}`), a.answer), first, `${ackLevel}: ${first}, as its ack level says`);
    t.match(await running.pipeline.close(never), { accepted: 1, stored: 1 });
    t.strictSame(a.later, ackLevel === 's3' ? ['stored'] : [], `${ackLevel}: the later answer`);
    t.equal(await running.closeWal(), 0);
    t.equal(existsSync(dir), false, `${ackLevel}: WAL_DIR untouched`);
  }
  t.strictSame(await stored(s3), [{ level: 'memory' }, { level: 's3' }]);
});

t.test('disk: the directory is taken and locked until closeWal; a second pipeline on it is refused with WalLocked', async (t) => {
  const { s3, spec, deps, logs } = await parts(t);
  const dir = join(tempDir(t, 'wal'), 'wal');
  const running = await startPipeline(spec('disk', dir), deps);
  t.ok(running.wal, 'the log, for its gauges');
  await t.rejects(startPipeline(spec('disk', dir), deps), WalLocked);
  await t.rejects(startPipeline(spec('disk', dir), deps), { message: /WAL_DIR/ }, 'the refusal names WAL_DIR, not DLQ_DIR');
  const a = answers();
  t.equal(running.pipeline.accept(entry('{"d":1}', '{"d":2}'), a.answer), 'pending', 'answered once fsynced');
  await a.count(1);
  t.strictSame(a.later, ['accepted']);
  t.ok(running.wal!.bytes > 0, 'the request is in the log');
  t.match(await running.pipeline.close(never), { accepted: 2, stored: 2 });
  t.equal(await running.closeWal(), 0);
  t.match(logs.at(-1), { level: 'info', msg: 'WAL closed: every event settled' });
  t.strictSame(readdirSync(dir).filter((name) => name !== '.lock'), [], 'every segment removed: nothing to replay');
  const next = await startPipeline(spec('disk', dir), deps);
  t.equal(await next.closeWal(), 0, 'released: the next pipeline takes it');
  t.strictSame(await stored(s3), [{ d: 1 }, { d: 2 }]);
});

t.test('disk: what the log holds unsettled is in the pipeline when startPipeline resolves, counted, logged, and sent under the batch instance given', async (t) => {
  const { s3, spec, deps, logs, walRegistry } = await parts(t);
  const dir = tempDir(t, 'wal');
  // An earlier run that logged a request and stopped before cutting it.
  const earlier = await recover(dir, 'unit', createWalMetrics(new Registry()), silent);
  const wal = new WriteAheadLog({ ...WAL, dir }, earlier.logId, earlier.segments, earlier.nextSeq, createWalMetrics(new Registry()), silent);
  const request = entry('{"r":1}', '{"r":2}');
  await new Promise<void>((resolve) => wal.appendEvents(wal.nextRef(), request.receivedAt, request.spans, request.body, () => resolve()));
  t.strictSame(await wal.close(), { unsettled: 2, segments: 1 });
  earlier.lock.release();

  const options = { ...pipelineOptions(3), batch: { ...pipelineOptions(3).batch, instanceId: 'dead-7' } };
  const running = await startPipeline(spec('disk', dir, { options }), deps);
  t.equal(running.pipeline.events, 2, 'already in the channel');
  t.equal((await walRegistry.getSingleMetric('wal_replayed_events_total')!.get()).values[0]!.value, 2);
  t.match(logs.find((l) => l.msg.startsWith('WAL: replaying')), { level: 'info', msg: 'WAL: replaying events an earlier run acknowledged and did not settle', events: 2, batches: 0, entries: 1, lost: 0 });
  t.match(await running.pipeline.close(never), { accepted: 2, stored: 2 });
  t.equal(await running.closeWal(), 0);
  const objects = await s3.objects();
  t.strictSame(objects.flatMap((o) => o.records.map((r) => r.event)), [{ r: 1 }, { r: 2 }]);
  t.match(objects[0]!.key, /-dead-7-/, 'the batch id names the instance given (an adopted WAL keeps its dead instance\'s)');
});

t.test('disk: nothing to replay, nothing logged; a stale lease (fresh() false) turns every answer into not_stored', async (t) => {
  const { spec, deps, logs } = await parts(t);
  let fresh = false;
  const running = await startPipeline(spec('disk', tempDir(t, 'wal'), { fresh: () => fresh }), deps);
  t.notOk(logs.some((l) => l.msg.startsWith('WAL: replaying')));
  const a = answers();
  running.pipeline.accept(entry('{"s":1}'), a.answer);
  await a.count(1);
  fresh = true;
  running.pipeline.accept(entry('{"s":2}'), a.answer);
  await a.count(2);
  t.strictSame(a.later, ['not_stored', 'accepted']);
  await running.pipeline.close(never);
  await running.closeWal();
});

t.test('disk with keys: the Idempotency-Keys come back from the key journal once the segments are gone; without (an adopted WAL) no journal', async (t) => {
  const { spec, deps } = await parts(t);
  const dir = join(tempDir(t, 'wal'), 'wal');
  const keys = { windowMs: 600_000, maxKeys: 100 };
  const withKeys = (at = dir) => {
    const base = spec('disk', at);
    return { ...base, wal: { ...base.wal!, keys } };
  };
  const first = await startPipeline(withKeys(), deps);
  const a = answers();
  const keyed = { ...entry('{"k":1}'), idem: { key: 'wired-1', hash: 5, bytes: 7 } };
  t.equal(first.pipeline.accept(keyed, a.answer), 'pending');
  await a.count(1);
  t.match(await first.pipeline.close(never), { stored: 1 });
  await first.closeWal();
  t.strictSame(readdirSync(dir).filter((name) => name.endsWith('.wal')), [], 'every segment removed');
  const second = await startPipeline(withKeys(), deps);
  t.same(second.keys, [{ key: 'wired-1', hash: 5, bytes: 7, at: keyed.receivedAt }], 'from the journal');
  await second.closeWal();
  const adopted = await startPipeline(spec('disk', dir), deps);
  t.same(adopted.keys, [], 'no journal read: only the log\'s keys (none)');
  await adopted.closeWal();
  // WAL_DIR/keys a symlink: refused (it could name another instance's directory), the lock released.
  const linked = join(tempDir(t, 'wal'), 'wal');
  mkdirSync(linked);
  symlinkSync(tempDir(t, 'elsewhere'), join(linked, 'keys'));
  await t.rejects(startPipeline(withKeys(linked), deps), SymlinkRefused);
  await (await startPipeline(spec('disk', linked), deps)).closeWal();
});
