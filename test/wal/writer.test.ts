// The group writer after a failed write: every waiter is told, and close() returns. A real failure:
// the segment's directory does not exist, so opening the segment file fails (ENOENT).
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import t from 'tap';
import { createWalMetrics } from '../../src/metrics/wal.js';
import { GroupWriter, type SegmentState } from '../../src/wal/writer.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

t.test('after a failed write every later waiter is told false at once, and close() returns', async (t) => {
  const dir = join(t.testdir(), 'missing');
  const writer = new GroupWriter({ dir, syncIntervalMs: 2, syncBytes: 1 << 20 }, createWalMetrics(new Registry()), pino({ level: 'silent' }), () => {});
  const seg: SegmentState = { seq: 0, size: 0, written: 0, unsettled: 0, pendingCuts: 0 };
  const told: (boolean | undefined)[] = [undefined, undefined, undefined];
  for (let i = 0; i < 3; i++) {
    const record = Buffer.from(`record ${i}`);
    seg.size += record.length;
    writer.enqueue(seg, record);
    let onStack = true;
    writer.await((ok) => {
      t.notOk(onStack, `waiter ${i} is not told on the caller's stack`);
      told[i] = ok;
    });
    onStack = false;
    await sleep(50);
  }
  t.same(told, [false, false, false], 'each waiter told: not written');
  t.match(writer.broken, /ENOENT/);
  const closed = await Promise.race([writer.close().then(() => true), sleep(2000).then(() => false)]);
  t.ok(closed, 'close() returns');
});

t.test('close() after a failure with records still queued answers them and returns', async (t) => {
  const dir = join(t.testdir(), 'missing');
  const writer = new GroupWriter({ dir, syncIntervalMs: 1000, syncBytes: 1 << 20 }, createWalMetrics(new Registry()), pino({ level: 'silent' }), () => {});
  const seg: SegmentState = { seq: 0, size: 0, written: 0, unsettled: 0, pendingCuts: 0 };
  const told: boolean[] = [];
  seg.size += 1;
  writer.enqueue(seg, Buffer.from('a'));
  writer.await((ok) => told.push(ok));
  const closed = await Promise.race([writer.close().then(() => true), sleep(2000).then(() => false)]);
  t.ok(closed, 'close() returns');
  t.same(told, [false]);
});
