// The start-up scan on real files whose trouble is one entry's: a header whose metadata is valid
// JSON of the wrong shape, a file larger than DLQ_MAX_BYTES (a real sparse file over 2 GiB), a key
// outside S3_PREFIX. Each is that entry's problem: set aside, counted (its events too, when its
// header says how many), logged; the lock and the rest of the queue stand. The `dlq` command says so
// when the directory itself cannot be scanned.
import { existsSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import t from 'tap';
import { acquireLock } from '../../src/dlq/lock.js';
import { createDlqMetrics } from '../../src/metrics/dlq.js';
import { dlqCommand, dlqFileWithMeta, setup, writeDlqFile } from '../helpers/dlq.js';
import { tempDir } from '../helpers/temp.js';

const SHAPES = ['null', '42', '"raw"', '[1]', '{"v":1,"key":"raw/a","events":"3","firstReceivedAt":1,"lastReceivedAt":1,"spilledAt":1,"crc32":1}', '{"v":1,"key":"raw/a","events":-1,"firstReceivedAt":1,"lastReceivedAt":1,"spilledAt":1,"crc32":1}'];

t.test('metadata of the wrong shape: that file is moved aside; the queue and the lock stand', async (t) => {
  const dir = tempDir(t, 'shapes');
  SHAPES.forEach((json, i) => writeFileSync(join(dir, `bad-${i}.jsonl.gz`), dlqFileWithMeta(json)));
  writeDlqFile(dir, 'good', [1, 2]);
  // On main `null` threw a TypeError out of the scan: an empty queue and no lock.
  const { store, value, logs } = await setup(t, { dir });
  t.same(store.list().map((f) => f.name), ['good.jsonl.gz']);
  t.equal(store.unusable, undefined);
  t.equal(await value('dlq_files_corrupt_total'), SHAPES.length);
  SHAPES.forEach((_, i) => t.ok(existsSync(join(dir, 'corrupt', `bad-${i}.jsonl.gz`)), `bad-${i} in corrupt/`));
  t.ok(logs.some((l) => l.msg === 'DLQ file moved aside to corrupt/, never uploaded' && l.reason === 'corrupt' && l.file === 'bad-0.jsonl.gz'));
  await t.rejects(acquireLock(dir, 'second'), { name: 'DlqLocked' }, 'the lock is held: a second server is refused');
});

t.test('a file larger than DLQ_MAX_BYTES (sparse, over 2 GiB) is moved aside before it is indexed; good files stay', async (t) => {
  const dir = tempDir(t, 'huge');
  writeDlqFile(dir, 'good', [1, 2]);
  writeDlqFile(dir, 'huge', [1, 2, 3, 4]);
  truncateSync(join(dir, 'huge.jsonl.gz'), 3 * 1024 ** 3); // on main: readFile failed on it forever, and its size evicted good files
  writeFileSync(join(dir, 'foreign.jsonl.gz'), 'x');
  truncateSync(join(dir, 'foreign.jsonl.gz'), 3 * 1024 ** 3);
  const { store, value, logs } = await setup(t, { dir, maxBytes: 1024 ** 3 });
  t.same(store.list().map((f) => f.name), ['good.jsonl.gz']);
  t.equal(await value('dlq_events_dropped_total', '{reason="capacity"}'), 0, 'no good file evicted');
  t.equal(await value('dlq_files_rejected_total', '{reason="too_large"}'), 2);
  t.equal(await value('dlq_events_dropped_total', '{reason="quarantined"}'), 4, 'the events its header names; none for the foreign file');
  t.ok(existsSync(join(dir, 'corrupt', 'huge.jsonl.gz')) && existsSync(join(dir, 'corrupt', 'foreign.jsonl.gz')));
  t.ok(logs.some((l) => l.level === 50 && l.msg === 'DLQ file moved aside to corrupt/, never uploaded' && l.reason === 'too_large' && l.file === 'huge.jsonl.gz'));
  t.equal(store.droppedEvents, 4);
});

t.test('a queued file that grew past DLQ_MAX_BYTES is never read whole: moved aside at re-upload, counted', async (t) => {
  const dir = tempDir(t, 'grown');
  writeDlqFile(dir, 'grown', [1, 2, 3]);
  const { store, value } = await setup(t, { dir, maxBytes: 4096 });
  t.equal(store.files, 1);
  truncateSync(join(dir, 'grown.jsonl.gz'), 8192); // replaced or appended to after the scan
  t.equal(await store.read(store.oldest()!), undefined);
  t.equal(store.files, 0);
  t.ok(existsSync(join(dir, 'corrupt', 'grown.jsonl.gz')));
  t.equal(await value('dlq_files_rejected_total', '{reason="too_large"}'), 1);
  t.equal(await value('dlq_events_dropped_total', '{reason="quarantined"}'), 3);
});

t.test('every drop reason and reject reason is exported at 0 from the start', async (t) => {
  const registry = new Registry();
  createDlqMetrics(registry);
  const text = await registry.metrics();
  for (const reason of ['capacity', 'ttl', 'write_failed', 'quarantined']) t.match(text, `dlq_events_dropped_total{reason="${reason}"} 0`);
  for (const reason of ['not_regular', 'unreadable', 'bad_key', 'too_large']) t.match(text, `dlq_files_rejected_total{reason="${reason}"} 0`);
});

t.test('a key outside S3_PREFIX (the prefix changed between runs): moved aside, its events counted as dropped', async (t) => {
  const dir = tempDir(t, 'prefix');
  writeDlqFile(dir, 'old-prefix', [1, 2, 3], 'events/2027/01/15/08/old-prefix.jsonl.gz');
  const { store, value } = await setup(t, { dir });
  t.equal(store.files, 0);
  t.equal(await value('dlq_files_rejected_total', '{reason="bad_key"}'), 1);
  t.equal(await value('dlq_events_dropped_total', '{reason="quarantined"}'), 3, 'on main: counted nowhere as lost');
});

t.test('a file found damaged at re-upload (its header was read): moved aside, its events counted as dropped', async (t) => {
  const dir = tempDir(t, 'damaged');
  writeDlqFile(dir, 'damaged', [1, 2, 3, 4, 5]);
  const where = join(dir, 'damaged.jsonl.gz');
  const data = readFileSync(where);
  data[data.length - 12] ^= 0xff; // in the deflate stream: the header still reads
  writeFileSync(where, data);
  const { store, value } = await setup(t, { dir });
  t.equal(store.files, 1, 'indexed: its header is fine');
  t.equal(await store.read(store.oldest()!), undefined);
  t.equal(store.files, 0);
  t.ok(existsSync(join(dir, 'corrupt', 'damaged.jsonl.gz')));
  t.equal(await value('dlq_files_corrupt_total'), 1);
  t.equal(await value('dlq_events_dropped_total', '{reason="quarantined"}'), 5, 'on main: counted nowhere as lost');
  t.equal(store.droppedEvents, 5);
});

t.test('the read-only scan (dlq stats) counts nothing as dropped: it moves nothing', async (t) => {
  const dir = tempDir(t, 'readonly');
  writeDlqFile(dir, 'old-prefix', [1, 2, 3], 'events/2027/01/15/08/old-prefix.jsonl.gz');
  const { value } = await setup(t, { dir, repair: false });
  t.equal(await value('dlq_events_dropped_total', '{reason="quarantined"}'), 0);
  t.ok(existsSync(join(dir, 'old-prefix.jsonl.gz')));
});

t.test('dlq stats|list|drain exit 1, saying so, when DLQ_DIR cannot be scanned', async (t) => {
  const file = join(tempDir(t, 'notdir'), 'dlq');
  writeFileSync(file, 'a file where the directory should be');
  for (const command of ['stats', 'list', 'drain']) {
    const run = await dlqCommand([command], { DLQ_DIR: file, S3_BUCKET: 'b', AWS_REGION: 'us-east-1' });
    t.equal(run.code, 1, `${command}: on main it said 0 files and exited 0`);
    t.match(run.stderr, new RegExp(`DLQ_DIR ${file} could not be scanned: .*; nothing was read or uploaded`), command);
    t.notMatch(run.stdout, /files\s+0/);
  }
});
