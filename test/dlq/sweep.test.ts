// The sweep and removals on real files: spills that land while a sweep lists the directory stay
// indexed; a file whose removal fails (a real fault: a non-empty directory in its place, which no
// unlink removes) stays queued and uncounted until it is really gone; the store's per-process tally
// of dropped events.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { batch, setup, T0 } from '../helpers/dlq.js';

t.test('files spilled while sweeps list the directory all stay indexed', async (t) => {
  const { store, dir } = await setup(t);
  const batches = Array.from({ length: 800 }, () => batch(1));
  let next = 0;
  const saver = async () => {
    for (let b = batches[next++]; b !== undefined; b = batches[next++]) await store.save(b.batch, b.gzip);
  };
  let sweeps = 0;
  const sweeper = async () => {
    while (next < batches.length) {
      await store.sweep();
      sweeps++;
    }
  };
  await Promise.all([...Array.from({ length: 8 }, saver), sweeper(), sweeper()]);
  const onDisk = readdirSync(dir).filter((n) => n.endsWith('.jsonl.gz'));
  t.equal(onDisk.length, batches.length);
  t.equal(store.files, onDisk.length, `every file on disk is indexed after ${sweeps} sweeps (on main some were forgotten until a restart)`);
  t.equal(store.events, batches.length);
});

t.test('a sweep still forgets a file another process removed', async (t) => {
  const { store, dir } = await setup(t);
  const b = batch(2);
  await store.save(b.batch, b.gzip);
  rmSync(join(dir, `${b.batch.id}.jsonl.gz`));
  await store.sweep();
  t.equal(store.files, 0);
});

/**
 * Replaces a queued file by a non-empty directory of its name (fs.rm without recursive fails on it);
 * returns what puts the file back.
 */
function blockRemoval(dir: string, id: string): () => void {
  const where = join(dir, `${id}.jsonl.gz`);
  const data = readFileSync(where);
  rmSync(where);
  mkdirSync(join(where, 'inside'), { recursive: true });
  return () => {
    rmSync(where, { recursive: true });
    writeFileSync(where, data);
  };
}

t.test('an expired file that cannot be removed stays queued, uncounted, and is removed (and counted once) at a later sweep', async (t) => {
  const { store, dir, clock, value, logs } = await setup(t, { ttlSeconds: 60 });
  const old = batch(7);
  await store.save(old.batch, old.gzip);
  const unblock = blockRemoval(dir, old.batch.id);
  clock.now = T0 + 61_000;
  await store.sweep();
  t.equal(store.files, 1, 'kept: on main it was forgotten and counted, and re-uploaded after a restart');
  t.equal(await value('dlq_events_dropped_total', '{reason="ttl"}'), 0);
  t.equal(await value('dlq_files_expired_total'), 0);
  t.ok(logs.some((l) => l.level === 50 && l.msg === 'DLQ file could not be removed: kept and tried again at the next sweep; remove it by hand' && l.file === `${old.batch.id}.jsonl.gz` && l.reason === 'expired'));
  await store.sweep();
  t.equal(await value('dlq_events_dropped_total', '{reason="ttl"}'), 0, 'still there: still not counted');
  unblock();
  await store.sweep();
  t.equal(store.files, 0);
  t.notOk(existsSync(join(dir, `${old.batch.id}.jsonl.gz`)));
  t.equal(await value('dlq_events_dropped_total', '{reason="ttl"}'), 7, 'counted once, when it is gone');
  t.equal(store.droppedEvents, 7);
});

t.test('an eviction that cannot remove the oldest file evicts the next one instead; the stuck file is retried at the sweep', async (t) => {
  const { store, dir, value } = await setup(t, { maxFiles: 2 });
  const [a, b, c] = [batch(1), batch(2), batch(3)];
  await store.save(a.batch, a.gzip);
  await store.save(b.batch, b.gzip);
  const unblock = blockRemoval(dir, a.batch.id);
  await store.save(c.batch, c.gzip); // never rejects
  t.same(store.list().map((f) => f.meta.events), [1, 3], 'the stuck file stays queued; the next oldest made room');
  t.equal(await value('dlq_events_dropped_total', '{reason="capacity"}'), 2, 'only what really left');
  unblock();
  const d = batch(4);
  await store.save(d.batch, d.gzip);
  t.same(store.list().map((f) => f.meta.events), [3, 4]);
  t.same(readdirSync(dir).filter((n) => n.endsWith('.jsonl.gz')).sort(), [`${c.batch.id}.jsonl.gz`, `${d.batch.id}.jsonl.gz`].sort());
  t.equal(await value('dlq_events_dropped_total', '{reason="capacity"}'), 3);
});

t.test('droppedEvents: this process\'s tally of every event the store dropped, by reason', async (t) => {
  const { store, clock, dir, value } = await setup(t, { maxFiles: 1, ttlSeconds: 60, maxBytes: 1024 });
  const [a, b] = [batch(1), batch(2)];
  await store.save(a.batch, a.gzip);
  await store.save(b.batch, b.gzip); // a evicted: 1
  const big = batch(2000); // its file is over DLQ_MAX_BYTES: not written, 2000
  await store.save(big.batch, big.gzip);
  clock.now = T0 + 61_000;
  await store.sweep(); // b expired: 2
  rmSync(dir, { recursive: true });
  const c = batch(4);
  await store.save(c.batch, c.gzip); // the directory is gone: write_failed, 4
  t.same(store.droppedEventsByReason, { capacity: 2001, ttl: 2, write_failed: 4, quarantined: 0 });
  t.equal(store.droppedEvents, 2007);
  const metric = (await Promise.all(['capacity', 'ttl', 'write_failed', 'quarantined'].map((r) => value('dlq_events_dropped_total', `{reason="${r}"}`)))).reduce((x, y) => x + y);
  t.equal(store.droppedEvents, metric, 'the same as the metric in a fresh registry');
});
