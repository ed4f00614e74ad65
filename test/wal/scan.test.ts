// scanSegment (the streamed reader replay uses) finds what readRecords finds, record for record
// and at the same stopping point, whatever the damage and however small its chunk.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { CUT, DONE, encodeEvents, encodeJson, EVENTS, type RawRecord, readRecords, scanSegment, segmentHeader } from '../../src/wal/format.js';

const dir = mkdtempSync(join(tmpdir(), 'ingest-scan-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const file = join(dir, '000000000000.wal');

const big = Buffer.from(`[${Array.from({ length: 40 }, (_, i) => JSON.stringify({ i, pad: 'p'.repeat(50) })).join(',')}]`);
const segment = Buffer.concat([
  segmentHeader('0badcafe'),
  ...encodeEvents(1_800_000_000_123, [1, 8, 9, 18], Buffer.from('[{"a":1},{"b":[2]}]')),
  encodeJson(CUT, { id: 'x' }),
  ...encodeEvents(1_800_000_000_124, [1, big.length - 1], big),
  encodeJson(DONE, { id: 'x' }),
  ...encodeEvents(1_800_000_000_125, [1, 3], Buffer.from('[{}]')),
]);

/** Scans `data` in chunks of `chunk` bytes: true when it finds what readRecords does; else reports the difference. */
async function both(t: Test, data: Buffer, chunk: number, label: string): Promise<boolean> {
  writeFileSync(file, data);
  const expected = readRecords(data);
  const kept: RawRecord[] = [];
  const scanned = await scanSegment(file, (type, off) => type !== EVENTS || off % 2 === 0, (r) => kept.push(r), Buffer.alloc(chunk));
  const wanted = expected.records.filter((r) => r.type !== EVENTS || r.off % 2 === 0);
  const got = { logId: scanned.logId, good: scanned.good, bad: scanned.bad, size: scanned.size, records: kept.map((r) => [r.type, r.off, r.payload.toString('latin1')]) };
  const want = { logId: expected.logId, good: expected.good, bad: expected.bad, size: data.length, records: wanted.map((r) => [r.type, r.off, r.payload.toString('latin1')]) };
  // Compared as text, and reported only when different: some 700 cases, each a deep compare in tap, cost seconds.
  if (JSON.stringify(got) === JSON.stringify(want)) return true;
  t.same(got, want, label);
  return false;
}

t.test('whole, cut short at every byte, a byte flipped anywhere: as readRecords, with chunks from 16 bytes up', async (t) => {
  let cases = 0;
  for (const chunk of [16, 17, 100, 1 << 20]) {
    if (!(await both(t, segment, chunk, `whole, chunk ${chunk}`))) return;
    if (!(await both(t, Buffer.concat([segment, Buffer.alloc(50)]), chunk, `zeros after, chunk ${chunk}`))) return;
    cases += 2;
  }
  for (let cut = 0; cut < segment.length; cut += 7, cases++) if (!(await both(t, segment.subarray(0, cut), cut % 2 === 0 ? 16 : 100, `cut at ${cut}`))) return;
  for (let at = 0; at < segment.length; at += 11, cases++) {
    const damaged = Buffer.from(segment);
    damaged[at]! ^= 0x40;
    if (!(await both(t, damaged, at % 3 === 0 ? 33 : 4096, `flipped at ${at}`))) return;
  }
  t.ok(cases > 600, `${cases} cases, each as readRecords`);
});
