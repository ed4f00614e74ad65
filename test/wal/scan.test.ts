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

async function both(t: Test, data: Buffer, chunk: number, label: string): Promise<void> {
  writeFileSync(file, data);
  const expected = readRecords(data);
  const kept: RawRecord[] = [];
  const scanned = await scanSegment(file, (type, off) => type !== EVENTS || off % 2 === 0, (r) => kept.push(r), Buffer.alloc(chunk));
  t.same({ logId: scanned.logId, good: scanned.good, bad: scanned.bad, size: scanned.size }, { logId: expected.logId, good: expected.good, bad: expected.bad, size: data.length }, label);
  const wanted = expected.records.filter((r) => r.type !== EVENTS || r.off % 2 === 0);
  t.same(kept.map((r) => [r.type, r.off, r.payload.toString('latin1')]), wanted.map((r) => [r.type, r.off, r.payload.toString('latin1')]), `${label}: the records asked for`);
}

t.test('whole, cut short at every byte, a byte flipped anywhere: as readRecords, with chunks from 16 bytes up', async (t) => {
  for (const chunk of [16, 17, 100, 1 << 20]) {
    await both(t, segment, chunk, `whole, chunk ${chunk}`);
    await both(t, Buffer.concat([segment, Buffer.alloc(50)]), chunk, `zeros after, chunk ${chunk}`);
  }
  for (let cut = 0; cut < segment.length; cut += 7) await both(t, segment.subarray(0, cut), cut % 2 === 0 ? 16 : 100, `cut at ${cut}`);
  for (let at = 0; at < segment.length; at += 11) {
    const damaged = Buffer.from(segment);
    damaged[at]! ^= 0x40;
    await both(t, damaged, at % 3 === 0 ? 33 : 4096, `flipped at ${at}`);
  }
});
