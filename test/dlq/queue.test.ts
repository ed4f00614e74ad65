// What the DLQ holds in memory: files in the order they were added (spill order), running totals
// that stay exact through replacements and removals, the oldest file free to re-upload, and the
// indexing sequence a sweep relies on.
import t from 'tap';
import type { DlqMeta } from '../../src/dlq/file.js';
import { FileQueue, queuedFile } from '../../src/dlq/queue.js';

const meta = (events: number, spilledAt: number): DlqMeta => ({ v: 1, key: `raw/k-${spilledAt}`, events, firstReceivedAt: 1, lastReceivedAt: 1, spilledAt, crc32: 0 });

t.test('queuedFile starts free: not busy, not corrupt, no backoff, not yet indexed', async (t) => {
  const file = queuedFile('a.jsonl.gz', 100, meta(3, 10));
  t.same(file, { name: 'a.jsonl.gz', bytes: 100, meta: meta(3, 10), busy: false, corrupt: false, retryAt: 0, failures: 0, seq: 0 });
});

t.test('an empty queue: no files, no totals, no oldest', async (t) => {
  const queue = new FileQueue();
  t.equal(queue.files, 0);
  t.equal(queue.bytes, 0);
  t.equal(queue.events, 0);
  t.equal(queue.lastSeq, 0);
  t.equal(queue.oldestSpilledAt, undefined);
  t.equal(queue.oldest(Number.MAX_SAFE_INTEGER), undefined);
  t.same(queue.list(), []);
});

t.test('files are listed in the order added, with files, bytes and events summed', async (t) => {
  const queue = new FileQueue();
  const files = [queuedFile('a', 100, meta(3, 10)), queuedFile('b', 50, meta(1, 20)), queuedFile('c', 7, meta(5, 30))];
  for (const f of files) queue.add(f);
  t.same(queue.list().map((f) => f.name), ['a', 'b', 'c']);
  t.equal(queue.files, 3);
  t.equal(queue.bytes, 157);
  t.equal(queue.events, 9);
  t.equal(queue.oldestSpilledAt, 10, 'the first added');
  t.same(files.map((f) => f.seq), [1, 2, 3], 'each gets the next sequence number');
  t.equal(queue.lastSeq, 3);
});

t.test('a file added again under a queued name replaces it: totals count it once, and it moves to the end', async (t) => {
  const queue = new FileQueue();
  const old = queuedFile('a', 100, meta(3, 10));
  queue.add(old);
  queue.add(queuedFile('b', 50, meta(1, 20)));
  const again = queuedFile('a', 40, meta(2, 30));
  queue.add(again);
  t.same(queue.list().map((f) => [f.name, f.bytes]), [['b', 50], ['a', 40]]);
  t.equal(queue.files, 2);
  t.equal(queue.bytes, 90);
  t.equal(queue.events, 3);
  t.equal(again.seq, 3);
  t.notOk(queue.has(old), 'the replaced object is no longer the queued one');
  t.ok(queue.has(again));
  t.notOk(queue.remove(old), 'removing the replaced object leaves the new one alone');
  t.equal(queue.files, 2);
  t.equal(queue.bytes, 90);
});

t.test('remove takes a file out once: false the second time, and the totals drop once', async (t) => {
  const queue = new FileQueue();
  const a = queuedFile('a', 100, meta(3, 10));
  const b = queuedFile('b', 50, meta(1, 20));
  queue.add(a);
  queue.add(b);
  t.ok(queue.remove(a));
  t.notOk(queue.remove(a));
  t.equal(queue.files, 1);
  t.equal(queue.bytes, 50);
  t.equal(queue.events, 1);
  t.equal(queue.oldestSpilledAt, 20, 'the next becomes the oldest');
  t.notOk(queue.remove(queuedFile('never', 1, meta(1, 1))), 'a file never queued');
  t.equal(queue.lastSeq, 2, 'removals do not rewind the sequence');
});

t.test('oldest(now) skips files busy, corrupt, or backing off until after now', async (t) => {
  const queue = new FileQueue();
  const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((name, i) => queuedFile(name, 1, meta(1, i)));
  for (const f of [a!, b!, c!, d!]) queue.add(f);
  a!.busy = true;
  b!.corrupt = true;
  c!.retryAt = 1000;
  t.equal(queue.oldest(999), d, 'c backs off until 1000');
  t.equal(queue.oldest(1000), c, 'free again at its retry time, and older than d');
  a!.busy = false;
  t.equal(queue.oldest(0), a);
  d!.busy = true;
  t.equal(queue.oldest(999), a);
  a!.busy = true;
  t.equal(queue.oldest(999), undefined, 'none free');
  t.equal(queue.files, 4, 'oldest() takes nothing out');
});
