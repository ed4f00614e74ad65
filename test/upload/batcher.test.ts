// Batch cuts on count, bytes and age, requests split exactly at a cut, and back-pressure from the sink.
import t, { type Test } from 'tap';
import { memoryAcks } from '../../src/acks.js';
import { Channel, type Entry } from '../../src/channel.js';
import { type Batch, Batcher, type BatchSink, encodeLines, objectKey } from '../../src/upload/batcher.js';

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
