// The WAL's record format: what is read back, and where reading stops on a torn or damaged record.
import t from 'tap';
import { CUT, decodeEvents, DONE, encodeEvents, encodeJson, KEY, readRecords, SEGMENT_HEADER_BYTES, segmentHeader, segmentName, segmentSeq } from '../../src/wal/format.js';

const body = Buffer.from('[{"a":1},{"b":[2]}]');
const spans = [1, 8, 9, 18];
const segment = Buffer.concat([segmentHeader('0badcafe'), ...encodeEvents(1_800_000_000_123, spans, body), encodeJson(CUT, { id: 'x' }), encodeJson(DONE, { id: 'x' })]);

t.test('records read back as written', async (t) => {
  const read = readRecords(segment);
  t.equal(read.bad, undefined);
  t.equal(read.logId, '0badcafe');
  t.equal(read.good, segment.length);
  t.same(read.records.map((r) => r.type), [1, CUT, DONE]);
  t.equal(read.records[0]!.off, SEGMENT_HEADER_BYTES);
  const events = decodeEvents(read.records[0]!.payload);
  t.same(events, { receivedAt: 1_800_000_000_123, spans, body });
  t.same(JSON.parse(read.records[2]!.payload.toString()), { id: 'x' });
});

t.test('a record cut short, at any byte, ends the readable part where it starts', async (t) => {
  const last = readRecords(segment).records[2]!.off;
  for (let cut = last + 1; cut < segment.length; cut++) {
    const read = readRecords(segment.subarray(0, cut));
    t.equal(read.good, last, `cut at ${cut}`);
    t.equal(read.records.length, 2);
  }
});

t.test('a flipped bit fails the checksum of its record, which is skipped up to the next valid record; zeros after the end are no record', async (t) => {
  const damaged = Buffer.from(segment);
  damaged[SEGMENT_HEADER_BYTES + 30] ^= 1;
  const read = readRecords(damaged);
  const events = readRecords(segment).records[1]!.off - SEGMENT_HEADER_BYTES;
  t.same({ ...read, records: read.records.map((r) => [r.type, r.off]) }, { logId: '0badcafe', records: [[CUT, SEGMENT_HEADER_BYTES + events], [DONE, readRecords(segment).records[2]!.off]], skipped: [{ off: SEGMENT_HEADER_BYTES, bytes: events, events: true }], good: segment.length, bad: undefined });
  const lastDamaged = Buffer.from(segment);
  lastDamaged[segment.length - 2] ^= 1;
  t.same(readRecords(lastDamaged).good, readRecords(segment).records[2]!.off, 'a bad final record with nothing valid after it ends the readable part');
  const cutDamaged = Buffer.from(segment);
  cutDamaged[readRecords(segment).records[1]!.off + 12] ^= 1;
  t.same(readRecords(cutDamaged).skipped, [{ off: readRecords(segment).records[1]!.off, bytes: readRecords(segment).records[2]!.off - readRecords(segment).records[1]!.off, events: false }], 'a cut record with its payload damaged reads as one that held no events');
  const zeros = readRecords(Buffer.concat([segment, Buffer.alloc(4096)]));
  t.equal(zeros.good, segment.length);
  t.equal(zeros.records.length, 3);
  t.ok(zeros.bad);
  t.equal(readRecords(Buffer.from('not a segment')).bad, 'no segment header');
});

t.test('a key record (Idempotency-Key) reads back after its events; damaged, it is skipped as a stretch that held no events', async (t) => {
  const key = encodeJson(KEY, { key: 'k-1', hash: -5, bytes: 19, at: 1_800_000_000_123 });
  const withKey = Buffer.concat([segmentHeader('0badcafe'), ...encodeEvents(1_800_000_000_123, spans, body), key, encodeJson(DONE, { id: 'x' })]);
  const read = readRecords(withKey);
  t.equal(read.bad, undefined);
  t.same(read.records.map((r) => r.type), [1, KEY, DONE]);
  t.same(JSON.parse(read.records[1]!.payload.toString()), { key: 'k-1', hash: -5, bytes: 19, at: 1_800_000_000_123 });
  const damaged = Buffer.from(withKey);
  damaged[read.records[1]!.off + 12]! ^= 0x01; // inside the key's JSON
  const again = readRecords(damaged);
  t.same(again.records.map((r) => r.type), [1, DONE], 'the key record is skipped, the records around it are read');
  t.same(again.skipped, [{ off: read.records[1]!.off, bytes: key.length, events: false }]);
});

t.test('segment names', async (t) => {
  t.equal(segmentName(7), '000000000007.wal');
  t.equal(segmentSeq('000000000007.wal'), 7);
  t.equal(segmentSeq('7.wal'), undefined);
  t.equal(segmentSeq('.lock'), undefined);
});
