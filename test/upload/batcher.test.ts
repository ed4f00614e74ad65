// Batch cuts on count, bytes and age, requests split exactly at a cut, and back-pressure from the
// sink; with OBJECT_KEY, cuts at a time partition's change and one open batch per field value.
import t, { type Test } from 'tap';
import { memoryAcks } from '../../src/acks.js';
import { Channel, type Entry } from '../../src/channel.js';
import { Registry } from 'prom-client';
import { DEFAULT_OBJECT_KEY, parseKeyTemplate } from '../../src/config/key-template.js';
import { createUploadMetrics } from '../../src/metrics/upload.js';
import { type Batch, Batcher, type BatcherOptions, type BatchSink, encodeLines, objectKey } from '../../src/upload/batcher.js';

/** A sink that takes batches while `room` says so; the upload loop plays this part in the server. */
class Collector implements BatchSink {
  batches: Batch[] = [];
  room = true;
  hasRoom(): boolean {
    return this.room;
  }
  submit(batch: Batch): void {
    this.batches.push(batch);
  }
}

const OPTIONS = { maxEvents: 3, maxBytes: 1 << 20, maxAgeMs: 60_000, prefix: 'raw', instanceId: 'unit' };

function setup(t: Test, options = OPTIONS) {
  const channel = new Channel(1000, 1 << 20);
  const sink = new Collector();
  const batcher = new Batcher(channel, sink, options, memoryAcks);
  t.teardown(() => batcher.flush());
  // The pipeline drains after a push (on a later tick); here the test drains at once.
  const push = (receivedAt: number, ...events: string[]) => {
    const result = channel.tryPush(entry(receivedAt, events));
    batcher.drain();
    return result;
  };
  return { channel, sink, batcher, push };
}

/** An entry as the front makes it: a body holding the events, and their byte spans. */
function entry(receivedAt: number, events: string[]): Entry {
  // Compacted, as the front holds a padded body: exactly the events, so line bytes are exact.
  const body = Buffer.from(events.join(''));
  const spans: number[] = [];
  let at = 0;
  for (const e of events) {
    spans.push(at, at + Buffer.byteLength(e));
    at += Buffer.byteLength(e);
  }
  return { receivedAt, body, spans, count: events.length, bytes: body.length };
}

/** The event texts of a batch, in order. */
const texts = (batch: Batch): string[] =>
  batch.segments.flatMap(({ entry: e, from, to }) => Array.from({ length: to - from }, (_, i) => e.body.toString('utf8', e.spans[2 * (from + i)], e.spans[2 * (from + i) + 1])));

t.test('cuts on count, splitting a request exactly at the cut', async (t) => {
  const { sink, push } = setup(t);
  push(1, '{"a":1}', '{"a":2}');
  push(2, '{"b":1}', '{"b":2}');
  push(3, '{"c":1}', '{"c":2}');
  t.same(sink.batches.map((b) => b.events), [3, 3]);
  t.same(texts(sink.batches[0]!), ['{"a":1}', '{"a":2}', '{"b":1}']);
  t.same(texts(sink.batches[1]!), ['{"b":2}', '{"c":1}', '{"c":2}']);
  t.same(sink.batches[0]!.segments.map((s) => s.entry.receivedAt), [1, 2]);
  t.same(sink.batches[1]!.segments.map((s) => s.entry.receivedAt), [2, 3]);
  t.equal(sink.batches[1]!.firstReceivedAt, 2);
  t.equal(sink.batches[1]!.lastReceivedAt, 3);
});

t.test('a request larger than a batch becomes several batches', async (t) => {
  const { sink, push, batcher } = setup(t);
  push(1, ...Array.from({ length: 8 }, (_, i) => `{"i":${i}}`));
  t.same(sink.batches.map((b) => b.events), [3, 3]);
  batcher.flush();
  t.same(sink.batches.map((b) => b.events), [3, 3, 2]);
  t.same(sink.batches.flatMap(texts), Array.from({ length: 8 }, (_, i) => `{"i":${i}}`));
});

t.test('cuts on bytes; an event larger than a batch travels alone', async (t) => {
  const line = (n: number) => `{"p":"${'x'.repeat(n)}"}`;
  const maxBytes = 200;
  const { sink, push, batcher } = setup(t, { ...OPTIONS, maxEvents: 100, maxBytes });
  const now = Date.now(); // 13 digits, as LINE_OVERHEAD_BYTES assumes
  push(now, line(50), line(50)); // 2 × (58 + 39) = 194 bytes
  push(now, line(50)); // would pass 200: cut first
  push(now, line(500)); // alone, over the limit
  push(now, line(10));
  batcher.flush();
  t.same(sink.batches.map((b) => b.events), [2, 1, 1, 1]);
  for (const batch of sink.batches) t.equal(encodeLines(batch).length, batch.bytes, 'bytes counted exactly (13-digit times)');
  t.ok(sink.batches.filter((b) => b.events > 1).every((b) => b.bytes <= maxBytes));
});

t.test('cuts on age', async (t) => {
  const { sink, push } = setup(t, { ...OPTIONS, maxEvents: 100, maxAgeMs: 20 });
  push(1, '{"a":1}');
  t.equal(sink.batches.length, 0);
  // The cut comes from the batcher's own timer: wait for it (bounded), not for a guessed time.
  for (let i = 0; i < 500 && sink.batches.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.same(sink.batches.map((b) => b.events), [1], 'the open batch was cut by its age');
});

t.test('a sink without room holds events back in the channel', async (t) => {
  const { sink, push, channel, batcher } = setup(t);
  sink.room = false;
  for (let i = 0; i < 5; i++) push(i, `{"i":${i}}`);
  t.equal(sink.batches.length, 0);
  t.equal(channel.events, 2, 'the batcher took one batch (cut, waiting) and no more');
  t.equal(batcher.heldEvents, 3);
  sink.room = true;
  batcher.drain();
  t.same(sink.batches.map((b) => b.events), [3]);
  t.equal(channel.events, 0);
  t.equal(batcher.heldEvents, 2);
});

t.test('keys: {prefix}/YYYY/MM/DD/HH/{batchId}.jsonl.gz in UTC; ids unique and time-sortable', async (t) => {
  t.equal(objectKey('raw', Date.UTC(2026, 0, 2, 3, 4, 5), 'x'), 'raw/2026/01/02/03/x.jsonl.gz');
  const { sink, push, batcher } = setup(t, { ...OPTIONS, maxEvents: 1 });
  push(1_700_000_000_000, '{}');
  push(1_700_000_000_000, '{}');
  push(1_700_000_000_001, '{}');
  batcher.flush();
  const ids = sink.batches.map((b) => b.id);
  t.equal(new Set(ids).size, 3);
  t.same([...ids].sort(), ids, 'ids sort in cut order');
  t.match(ids[0], /^1700000000000-unit-[0-9a-f]{6}-00000000$/);
  t.equal(sink.batches[0]!.key, `raw/2023/11/14/22/${ids[0]}.jsonl.gz`);
});

t.test('lines: {"received_at":<ms>,"event":<as sent>}', async (t) => {
  const { sink, push, batcher } = setup(t);
  push(1_700_000_000_123, '{"a":1}', '{"b":"é"}');
  push(7, '{"c":3}'); // any number of digits encodes right
  batcher.flush();
  t.equal(
    encodeLines(sink.batches[0]!).toString(),
    '{"received_at":1700000000123,"event":{"a":1}}\n{"received_at":1700000000123,"event":{"b":"é"}}\n{"received_at":7,"event":{"c":3}}\n',
  );
});

/** The OBJECT_KEY options of a batcher. */
const keyed = (template: string, maxOpen = 64) => ({ ...OPTIONS, key: { template: parseKeyTemplate(template), maxOpen } });

/** A batcher that counts its cuts and open batches in a real registry. */
function metered(t: Test, options: BatcherOptions) {
  const registry = new Registry();
  const metrics = createUploadMetrics(registry);
  const channel = new Channel(1000, 1 << 20);
  const sink = new Collector();
  const batcher = new Batcher(channel, sink, options, memoryAcks, metrics);
  t.teardown(() => batcher.flush());
  const push = (receivedAt: number, ...events: string[]) => {
    channel.tryPush(entry(receivedAt, events));
    batcher.drain();
  };
  const cuts = async () => Object.fromEntries((await metrics.batchesCut.get()).values.filter((v) => v.value > 0).map((v) => [v.labels.reason, v.value]));
  const open = async () => (await metrics.openBatches.get()).values[0]?.value;
  return { sink, batcher, push, cuts, open };
}

t.test('OBJECT_KEY set to the default\'s text: the same keys as unset', async (t) => {
  const plain = setup(t, { ...OPTIONS, maxEvents: 1 });
  const templated = setup(t, { ...keyed(DEFAULT_OBJECT_KEY), maxEvents: 1 });
  for (const { push, batcher } of [plain, templated]) {
    push(1_700_000_000_000, '{}');
    push(1_800_000_000_000, '{}');
    batcher.flush();
  }
  const shape = (b: Batch) => b.key.replace(b.id, '<id>');
  t.same(templated.sink.batches.map(shape), plain.sink.batches.map(shape));
  t.same(plain.sink.batches.map(shape), ['raw/2023/11/14/22/<id>.jsonl.gz', 'raw/2027/01/15/08/<id>.jsonl.gz']);
});

t.test('with OBJECT_KEY, a batch is cut when its time partition changes: every event under its own hour; unset, as before', async (t) => {
  const hourEnd = Date.UTC(2026, 11, 7, 22, 59, 59, 999);
  const { sink, push, batcher, cuts } = metered(t, { ...keyed('{prefix}/dt={yyyy}-{MM}-{dd}/hour={HH}/{batch}'), maxEvents: 100 });
  push(hourEnd, '{"a":1}', '{"a":2}');
  push(hourEnd + 1, '{"a":3}');
  batcher.flush();
  t.same(sink.batches.map((b) => [b.events, b.key.replace(b.id, '<id>')]), [[2, 'raw/dt=2026-12-07/hour=22/<id>.jsonl.gz'], [1, 'raw/dt=2026-12-07/hour=23/<id>.jsonl.gz']]);
  t.same(await cuts(), { time: 1, flush: 1 });
  const before = setup(t, { ...OPTIONS, maxEvents: 100 });
  before.push(hourEnd, '{"a":1}');
  before.push(hourEnd + 1, '{"a":2}');
  before.batcher.flush();
  t.same(before.sink.batches.map((b) => b.events), [2], 'unset: the first event\'s hour, as before');
});

t.test('{event.FIELD}: one open batch per value, each cut on its own count; each object holds only its value; hostile values cannot bend a key', async (t) => {
  const { sink, push, batcher, cuts, open } = metered(t, { ...keyed('{prefix}/type={event.type}/{batch}'), maxEvents: 2 });
  push(1_700_000_000_000, '{"type":"a","i":0}', '{"type":"b","i":1}', '{"type":"a","i":2}', '{"type":"a","i":3}');
  t.same(sink.batches.map((b) => texts(b)), [['{"type":"a","i":0}', '{"type":"a","i":2}']], 'a\'s batch cut at 2 events; b still open');
  t.same(sink.batches[0]!.segments.map((s) => [s.from, s.to]), [[0, 1], [2, 3]], 'runs of the request, not the events between');
  t.match(sink.batches[0]!.partition, { field: 'type', value: 'a', openFrom: { index: 1 } }, 'the first event in no cut: b\'s');
  t.equal(await open(), 2);
  push(1_700_000_000_001, '{"type":"../x"}', '{"type":"a/b"}', `{"type":"${'z'.repeat(300)}"}`, '{"type":"é"}', '{"type":7}', '{"type":null}', '{}', '{"type":""}');
  batcher.flush();
  t.equal(await open(), 0);
  const byValue = new Map<string, string[]>();
  for (const b of sink.batches) byValue.set(b.partition!.value, [...(byValue.get(b.partition!.value) ?? []), ...texts(b)]);
  t.same(byValue.get('a'), ['{"type":"a","i":0}', '{"type":"a","i":2}', '{"type":"a","i":3}']);
  t.same(byValue.get('__HIVE_DEFAULT_PARTITION__'), ['{"type":7}', '{"type":null}', '{}', '{"type":""}'], 'missing, not a string or empty: one partition');
  for (const b of sink.batches) {
    t.ok(b.key.startsWith('raw/type=') && b.key.endsWith(`/${b.id}.jsonl.gz`) && b.key.split('/').length === 3, b.key);
    t.notMatch(b.key.split('/')[1]!, /^type=\.\.?$/);
  }
  t.ok(sink.batches.some((b) => b.key.includes('type=..%2Fx/')) && sink.batches.some((b) => b.key.includes('type=a%2Fb/')) && sink.batches.some((b) => b.key.includes('type=%C3%A9/')));
  t.same(await cuts(), { events: 3, flush: 6 }, 'a once, the default partition twice (4 events); the rest at the flush');
});

t.test('PARTITIONS_MAX_OPEN: a new value cuts the batch opened first, so memory stays bounded for any number of values', async (t) => {
  const { sink, push, batcher, cuts, open } = metered(t, { ...keyed('{prefix}/{event.k}/{batch}', 2), maxEvents: 100 });
  push(1, '{"k":"a"}', '{"k":"b"}', '{"k":"a"}');
  t.equal(sink.batches.length, 0);
  push(2, '{"k":"c"}');
  t.same(sink.batches.map((b) => [b.partition!.value, b.events]), [['a', 2]], 'a, opened first, is cut for c');
  t.equal(await open(), 2);
  for (let i = 0; i < 50; i++) push(3, `{"k":"v${i}"}`);
  t.equal(await open(), 2, 'never more than PARTITIONS_MAX_OPEN');
  batcher.flush();
  t.equal(sink.batches.reduce((n, b) => n + b.events, 0), 54, 'every event in one batch');
  t.same(await cuts(), { partitions: 51, flush: 2 });
});
