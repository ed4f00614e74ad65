// A DLQ file back to S3 (drainFile) and a drain of them all (drain), on real files, a real S3
// server (s3rver) and the test proxy where S3 must refuse, fail or stall (it cannot be made to):
// a file leaves only once S3 has it, every other outcome keeps it; the drain goes oldest first,
// skips what fails for good, stops when S3 looks down or when told, and never reads as live traffic.
import { rmSync } from 'node:fs';
import { getEventListeners } from 'node:events';
import fs from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import t, { type Test } from 'tap';
import { Disk } from '../../src/disk/disk.js';
import { drain, drainFile, type Drained } from '../../src/dlq/drain.js';
import { headObject, OverwriteGuard } from '../../src/dlq/guard.js';
import { DlqStore, type QueuedFile } from '../../src/dlq/store.js';
import { createDlqMetrics } from '../../src/metrics/dlq.js';
import { createUploadMetrics } from '../../src/metrics/upload.js';
import { S3Uploader } from '../../src/upload/s3.js';
import { batch } from '../helpers/dlq.js';
import { memoryLog } from '../helpers/log.js';
import { BUCKET, proxiedS3 } from '../helpers/s3.js';
import { tempDir } from '../helpers/temp.js';

const { s3, proxy, client } = await proxiedS3(t);


/** A store on a temp directory holding one file per event count given (oldest first), an uploader that tries once, and what they count and log. */
async function rig(t: Test, events: number[], options: { keys?: (string | undefined)[]; disk?: Disk; ifAbsent?: boolean } = {}) {
  const { log, lines: logs } = memoryLog();
  const dlqRegistry = new Registry();
  const metrics = createDlqMetrics(dlqRegistry);
  const dir = tempDir(t, 'dlq');
  let now = 1_800_000_000_000;
  const store = await DlqStore.open({ dir, maxBytes: 1 << 30, maxFiles: 1000, whenFull: 'evict', ttlSeconds: 3600, now: () => now, repair: true, prefix: 'raw', instanceId: 'unit', disk: options.disk }, metrics, log);
  t.teardown(() => store.close());
  const batches: (ReturnType<typeof batch> & { key: string })[] = [];
  for (const [i, n] of events.entries()) {
    const b = batch(n);
    const key = options.keys?.[i] ?? b.batch.key;
    now++;
    await store.save({ ...b.batch, key, ...(options.ifAbsent === true && { ifAbsent: true }) }, b.gzip);
    batches.push({ ...b, key });
  }
  const uploadRegistry = new Registry();
  const uploader = new S3Uploader(client, { bucket: BUCKET, maxAttempts: 1, timeoutMs: 2000 }, createUploadMetrics(uploadRegistry), pino({ level: 'silent' }));
  const value = async (registry: Registry, name: string, labels = '') => {
    const line = (await registry.metrics()).split('\n').find((l) => l.startsWith(`${name}${labels} `));
    return line === undefined ? 0 : Number(line.split(' ').pop());
  };
  const file = (i: number): QueuedFile => store.list().find((f) => f.name === `${batches[i]!.batch.id}.jsonl.gz`)!;
  return {
    store, dir, batches, uploader, logs, file,
    options: { metrics, log },
    dlq: (name: string, labels?: string) => value(dlqRegistry, name, labels),
    upload: (name: string, labels?: string) => value(uploadRegistry, name, labels),
    stored: async () => new Set((await s3.objects()).map((o) => o.key)),
  };
}

const onDisk = (dir: string) => fs.readdir(dir).then((names) => names.filter((n) => n.endsWith('.jsonl.gz')));

t.test('stored: S3 gets the gzip first PUT byte for byte, unconditionally; then the file is deleted, its events counted, a success logged', async (t) => {
  const r = await rig(t, [3]);
  const drained = await drainFile(r.store, r.file(0), r.uploader, r.options);
  const { key, gzip } = r.batches[0]!;
  t.same(drained, { result: 'stored', key, events: 3, already: false });
  const object = (await s3.objects()).find((o) => o.key === key)!;
  t.ok(object.gzip.equals(gzip));
  t.equal(object.metadata['event-count'], '3');
  t.equal(proxy.puts[0]!.headers['if-none-match'], undefined, 'no guard: not conditional');
  t.same(await onDisk(r.dir), []);
  t.equal(r.store.files, 0);
  t.equal(await r.dlq('dlq_events_reuploaded_total'), 3);
  t.match(r.logs.find((l) => l.msg === `DLQ → RAW success: ${key} events=3`), { level: 30, key, events: 3, already: false, file: `${r.batches[0]!.batch.id}.jsonl.gz` });
});

t.test('failed: a file S3 refuses is kept and still queued, nothing counted; not live unless told, so it does not read as S3 failing', async (t) => {
  const r = await rig(t, [2]);
  proxy.decide = () => ({ status: 403, code: 'AccessDenied' });
  const drained = await drainFile(r.store, r.file(0), r.uploader, r.options);
  t.equal(drained.result, 'failed');
  t.match(drained, { key: r.batches[0]!.key, error: { name: 'AccessDenied' } });
  t.equal((await onDisk(r.dir)).length, 1);
  t.equal(r.store.files, 1);
  t.equal(await r.dlq('dlq_events_reuploaded_total'), 0);
  t.equal(r.uploader.failingSeconds(Date.now() + 60_000), 0, 'not live: s3_put_failing_seconds stays 0');
  await drainFile(r.store, r.file(0), r.uploader, { ...r.options, live: true });
  t.ok(r.uploader.failingSeconds(Date.now() + 60_000) > 0, 'live: true is passed on, and then it does');
});

t.test('gone and unreadable: a file another process removed is not PUT; one that cannot be read now is kept', async (t) => {
  let failReads = false;
  const dirRef = { dir: '' };
  // EIO on reading a file cannot be produced on a healthy disk: injected through the disk seam.
  const open = (async (...args: Parameters<typeof fs.open>) => {
    if (failReads && String(args[0]).startsWith(dirRef.dir) && String(args[0]).endsWith('.jsonl.gz')) throw Object.assign(new Error('EIO: i/o error, open'), { code: 'EIO' });
    return fs.open(...args);
  }) as typeof fs.open;
  const r = await rig(t, [1, 2], { disk: new Disk({ ...fs, open }) });
  dirRef.dir = r.dir;
  rmSync(join(r.dir, r.file(0).name));
  t.same(await drainFile(r.store, r.file(0), r.uploader, r.options), { result: 'gone' });
  t.equal(await r.dlq('dlq_events_taken_total'), 1, 'the store counted it as taken');
  failReads = true;
  const unreadable = await drainFile(r.store, r.file(1), r.uploader, r.options);
  t.equal(unreadable.result, 'unreadable');
  t.equal((unreadable as Extract<Drained, { result: 'unreadable' }>).error.message, 'EIO: i/o error, open');
  t.equal(r.store.files, 1, 'kept, still queued');
  t.same(proxy.puts, [], 'nothing PUT');
});

t.test('with a guard: a conditional PUT; a file already in S3 deleted without one; a foreign key or a 412 kept with the reason', async (t) => {
  const r = await rig(t, [1, 2, 1, 1], { keys: [undefined, undefined, 'raw/2027/01/15/08/not-its-name.jsonl.gz'] });
  const guard = new OverwriteGuard('raw', headObject(client, BUCKET, 2000));
  const options = { ...r.options, guard };
  t.match(await drainFile(r.store, r.file(0), r.uploader, options), { result: 'stored', already: false });
  t.equal(proxy.puts[0]!.headers['if-none-match'], '*');
  // The file's first PUT was stored and its answer lost: the object at its key is this batch.
  await r.uploader.put({ key: r.batches[1]!.key, body: r.batches[1]!.gzip, events: 2 });
  proxy.puts.length = 0;
  t.same(await drainFile(r.store, r.file(1), r.uploader, options), { result: 'stored', key: r.batches[1]!.key, events: 2, already: true });
  t.same(proxy.puts, [], 'not PUT again');
  t.equal(await r.dlq('dlq_events_reuploaded_total'), 3);
  t.match(await drainFile(r.store, r.file(2), r.uploader, options), { result: 'kept', reason: /^its key is not the one this server makes for it/ });
  proxy.decide = () => ({ status: 412, code: 'PreconditionFailed' });
  t.match(await drainFile(r.store, r.file(3), r.uploader, options), { result: 'kept', reason: /^an object is already at its key/ });
  t.equal(r.store.files, 2, 'both kept');
  t.same(proxy.puts.map((p) => p.key), [r.batches[3]!.key], 'the foreign key was never PUT');
});

t.test('a file of a batch replayed short (ifAbsent) is PUT If-None-Match, guard or not: a 412 (its complete object is there) counts as stored, never overwritten', async (t) => {
  const r = await rig(t, [2, 3], { ifAbsent: true });
  // Injected on the wire: s3rver ignores If-None-Match on a PUT; S3 answers 412 where an object is.
  proxy.decide = ({ key }) => (key === r.batches[0]!.key ? { status: 412, code: 'PreconditionFailed' } : 'pass');
  t.same(await drainFile(r.store, r.file(0), r.uploader, r.options), { result: 'stored', key: r.batches[0]!.key, events: 2, already: true });
  const guard = new OverwriteGuard('raw', headObject(client, BUCKET, 2000));
  t.same(await drainFile(r.store, r.file(1), r.uploader, { ...r.options, guard }), { result: 'stored', key: r.batches[1]!.key, events: 3, already: false });
  t.same(proxy.puts.map((p) => p.headers['if-none-match']), ['*', '*'], 'both conditional');
  const keys = new Set((await s3.objects()).map((o) => o.key));
  t.same([keys.has(r.batches[0]!.key), keys.has(r.batches[1]!.key)], [false, true], 'a free key takes the short batch; the other is never written');
  t.equal(r.store.files, 0, 'both files leave the DLQ');
});

t.test('an abort during the PUT: aborted, the file kept and queued', async (t) => {
  const r = await rig(t, [2]);
  const stop = new AbortController();
  proxy.decide = () => {
    stop.abort(new Error('stopping'));
    return 'stall';
  };
  t.same(await drainFile(r.store, r.file(0), r.uploader, { ...r.options, signal: stop.signal }), { result: 'aborted' });
  t.equal(r.store.files, 1);
  t.equal((await onDisk(r.dir)).length, 1);
  t.notOk(r.file(0).busy);
});

t.test('drain: oldest first, each once; busy, corrupt and set-aside files skipped; a refused file skipped and kept; every outcome heard', async (t) => {
  const r = await rig(t, [1, 2, 3, 4, 5, 6], { keys: [undefined, undefined, undefined, undefined, 'elsewhere/x.jsonl.gz'] });
  r.file(1).busy = true;
  r.file(2).corrupt = true;
  proxy.decide = ({ key }) => (key === r.batches[3]!.key ? { status: 403, code: 'AccessDenied' } : 'pass');
  const heard: string[] = [];
  const summary = await drain(r.store, r.uploader, { ...r.options, onFile: (file, drained) => heard.push(`${file.meta.events}:${drained.result}`) });
  t.same(summary, { stored: 2, events: 7, unreadable: 0, failed: 1, kept: 0, stopped: undefined });
  t.same(heard, ['1:stored', '4:failed', '5:gone', '6:stored']);
  t.same(proxy.puts.map((p) => p.key), [r.batches[0]!.key, r.batches[3]!.key, r.batches[5]!.key], 'in spill order');
  t.same(r.store.list().map((f) => f.meta.events), [2, 3, 4], 'the skipped and the refused stay queued');
  t.ok(r.logs.some((l) => l.level === 40 && l.msg === 'DLQ re-upload failed; file kept, the next goes ahead' && l.key === r.batches[3]!.key));
  t.ok(r.file(1).busy, 'a file busy elsewhere is left to its holder');
});

t.test('drain stops once three files in a row fail with errors a later attempt could fix; refusals for good do not count', async (t) => {
  const down = await rig(t, [1, 1, 1, 1, 1]);
  proxy.decide = () => ({ status: 500, code: 'InternalError' });
  const summary = await drain(down.store, down.uploader, down.options);
  t.same(summary, { stored: 0, events: 0, unreadable: 0, failed: 3, kept: 0, stopped: '3 files in a row failed with errors a later attempt could fix: S3 looks down or unreachable' });
  t.equal(proxy.puts.length, 3, 'the last two not waited out');
  t.equal(down.store.files, 5);

  proxy.puts.length = 0;
  const mixed = await rig(t, [1, 1, 1, 1, 1, 1]);
  const answers = [500, 500, 403, 500, 500];
  proxy.decide = ({ key }) => {
    const status = answers[mixed.batches.findIndex((b) => b.key === key)];
    return status === undefined ? 'pass' : { status, code: status === 403 ? 'AccessDenied' : 'InternalError' };
  };
  const went = await drain(mixed.store, mixed.uploader, mixed.options);
  t.same(went, { stored: 1, events: 1, unreadable: 0, failed: 5, kept: 0, stopped: undefined }, 'an AccessDenied between them resets the run');
});

t.test('drain told to stop: an aborted signal PUTs nothing; one aborted mid-PUT keeps that file and counts an abort, not an S3 error', async (t) => {
  const r = await rig(t, [1, 2]);
  const early = new AbortController();
  early.abort();
  t.same(await drain(r.store, r.uploader, { ...r.options, signal: early.signal }), { stored: 0, events: 0, unreadable: 0, failed: 0, kept: 0, stopped: 'stopping' });
  t.same(proxy.puts, []);
  const stop = new AbortController();
  proxy.decide = () => {
    // Any reason: the drain gives the PUT an UploadAborted, so S3Uploader counts it as an abort.
    stop.abort(new Error('SIGTERM'));
    return 'stall';
  };
  t.same(await drain(r.store, r.uploader, { ...r.options, signal: stop.signal }), { stored: 0, events: 0, unreadable: 0, failed: 0, kept: 0, stopped: 'stopping' });
  t.equal(proxy.puts.length, 1, 'the second file not tried');
  t.equal(r.store.files, 2);
  t.equal(await r.upload('s3_put_errors_total', '{code="Aborted"}'), 1);
  t.equal(await r.upload('s3_put_errors_total', '{code="Other"}'), 0);
});

t.test('drain lets go of the caller\'s signal when it ends', async (t) => {
  const r = await rig(t, [1]);
  const signal = new AbortController().signal;
  t.same(await drain(r.store, r.uploader, { ...r.options, signal }), { stored: 1, events: 1, unreadable: 0, failed: 0, kept: 0, stopped: undefined });
  t.equal(getEventListeners(signal, 'abort').length, 0, 'no listener left on a signal that lives on (a server\'s)');
});

t.test('a file another process took while its PUT was in flight: stored, but its events counted there, not here', async (t) => {
  const r = await rig(t, [4]);
  let swept: Promise<void> = Promise.resolve();
  proxy.decide = () => {
    swept = (async () => {
      rmSync(join(r.dir, r.file(0).name));
      await r.store.sweep();
      proxy.release();
    })();
    return 'stall';
  };
  const file = r.file(0);
  const drained = await drainFile(r.store, file, r.uploader, r.options);
  await swept;
  t.match(drained, { result: 'stored', events: 4 });
  t.equal(await r.dlq('dlq_events_reuploaded_total'), 0, 'not counted twice');
  t.equal(await r.dlq('dlq_events_taken_total'), 4);
});
