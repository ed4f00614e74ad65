// Segment removal on real files, with a failing unlink injected through the disk layer (a healthy
// disk does not refuse one): oldest first, each fsynced, and never a later segment while an earlier
// one stays, since its cut records may describe the earlier one's events.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import t from 'tap';
import { Disk } from '../../src/disk/disk.js';
import { createWalMetrics } from '../../src/metrics/wal.js';
import { CUT, type CutRecord, type Position, readRecords, segmentHeader, segmentName } from '../../src/wal/format.js';
import { type SegmentState, WriteAheadLog } from '../../src/wal/log.js';

/**
 * Three settled segments on disk, as replay hands them over, and a log on them whose unlink of
 * `refused` fails while `refusing.on`; `logged` resolves at the first error line.
 */
function settledLog(dir: string, refused: string) {
  const segments: SegmentState[] = [0, 1, 2].map((seq) => {
    writeFileSync(join(dir, segmentName(seq)), segmentHeader('0badcafe'));
    return { seq, size: 16, written: 16, unsettled: 0, pendingCuts: 0 };
  });
  const refusing = { on: true };
  const calls: string[] = [];
  const unlink = async (file: Parameters<typeof fs.unlink>[0]) => {
    calls.push(String(file).split('/').pop()!);
    if (refusing.on && String(file).endsWith(refused)) throw Object.assign(new Error('EIO: i/o error, unlink'), { code: 'EIO' });
    await fs.unlink(file);
  };
  const logs: string[] = [];
  let told = () => {};
  const logged = new Promise<void>((resolve) => (told = resolve));
  const log = pino({ level: 'error' }, { write: (line: string) => void (logs.push((JSON.parse(line) as { msg: string }).msg), told()) });
  const wal = new WriteAheadLog({ dir, maxBytes: 1 << 30, syncIntervalMs: 0, syncBytes: 1 << 20, segmentBytes: 1 << 20, disk: new Disk({ ...fs, unlink }) }, '0badcafe', segments, 3, createWalMetrics(new Registry()), log);
  return { wal, refusing, calls, logs, logged };
}

const present = (dir: string) => [0, 1, 2, 3].filter((seq) => existsSync(join(dir, segmentName(seq))));

t.test('a segment whose removal fails holds back every later one, and is tried again first', async (t) => {
  const dir = t.testdir();
  const { wal, refusing, calls, logs, logged } = settledLog(dir, segmentName(1));
  wal.settle('a', new Map(), undefined); // a write, then a checkpoint: segments 0 to 2 are settled
  await logged;
  t.same(present(dir).filter((seq) => seq < 3), [1, 2], 'segment 2 stays while segment 1 does (each was removed on its own before: a restart would batch 1\'s events again under new keys)');
  t.same(calls, [segmentName(0), segmentName(1)]);
  t.same(logs, ['WAL segment could not be removed; its batches are settled; no later segment is removed before it, tried again at each write; a restart meanwhile PUTs them again to the same keys']);
  refusing.on = false;
  t.same(await wal.close(), { unsettled: 0, segments: 0 });
  t.same(present(dir), [], 'all removed at a clean stop');
  t.same(calls.slice(2), [segmentName(1), segmentName(2), segmentName(3)], 'in order, segment 1 first');
});

t.test('a clean stop that cannot remove a segment keeps it and every later one, for the next start to replay', async (t) => {
  const dir = t.testdir();
  const { wal } = settledLog(dir, segmentName(0));
  await wal.close();
  t.same(present(dir), [0, 1, 2, 3]);
});

t.test('each cut record names the starts and first times of the (at most 4) cuts without `part` written before it in this process', async (t) => {
  const dir = t.testdir();
  const wal = new WriteAheadLog({ dir, maxBytes: 1 << 30, syncIntervalMs: 0, syncBytes: 1 << 20, segmentBytes: 1 << 20 }, '0badcafe', [], 0, createWalMetrics(new Registry()), pino({ level: 'silent' }));
  const cut = (i: number, part?: CutRecord['part']): CutRecord => ({ id: `c${i}`, key: `k${i}`, events: 1, first: 100 + i, last: 100 + i, from: [0, 16 * i, 0], to: [0, 16 * i, 1], ...(part && { part }) });
  const cuts = [cut(0), cut(1), cut(2, { field: 'f', value: 'v' }), cut(3), cut(4), cut(5), cut(6)];
  await Promise.all(cuts.map((c) => wal.appendCut(c).durable));
  const written = readRecords(readFileSync(join(dir, segmentName(0)))).records.filter((r) => r.type === CUT).map((r) => JSON.parse(r.payload.toString()) as CutRecord);
  await wal.close();
  const at = (i: number) => [...([0, 16 * i, 0] as Position), 100 + i];
  t.same(written.map((c) => c.prev ?? 'none'), ['none', [at(0)], 'none', [at(0), at(1)], [at(0), at(1), at(3)], [at(0), at(1), at(3), at(4)], [at(1), at(3), at(4), at(5)]]);
});
