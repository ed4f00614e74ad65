// rebuild() on a log laid out by hand, one of each case: a done batch, a batch to send again across
// two segments, one whose first segment is gone, one that damage cut short, events whose cut
// record damage took, and a record split between the last cut and what follows it.
// test/wal/replay.test.ts checks the whole of replay against a reference on random logs.
import { pino } from 'pino';
import t from 'tap';
import { LINE_OVERHEAD_BYTES, objectKey } from '../../src/upload/batcher.js';
import type { CutRecord, Position } from '../../src/wal/format.js';
import type { SegmentState } from '../../src/wal/log.js';
import { type CutAt, type EventsAt, rebuild } from '../../src/wal/rebuild.js';
import { jsonArray } from '../helpers/pipeline.js';

/** An events record of `count` events, each `{"s":seg,"o":off,"i":i}`. */
function record(seg: number, off: number, count: number): EventsAt {
  const { body, spans } = jsonArray(Array.from({ length: count }, (_, i) => JSON.stringify({ s: seg, o: off, i })));
  return { seg, off, count, entry: { receivedAt: 1_800_000_000_000 + off, body, spans, count, bytes: body.length, wal: { seg, off, base: 0 } } };
}

function cutAt(seg: number, id: string, events: number, from: Position, to: Position): CutAt {
  const cut: CutRecord = { id, key: `raw/${id}.jsonl.gz`, events, first: 1, last: 2, from, to };
  return { cut, seg };
}

const lineBytes = (e: EventsAt, from: number, to: number): number => {
  let n = 0;
  for (let k = from; k < to; k++) n += LINE_OVERHEAD_BYTES + e.entry.spans[2 * k + 1]! - e.entry.spans[2 * k]!;
  return n;
};

t.test('batches to send again, entries to batch afresh, what each segment holds, what is lost', async (t) => {
  // Segment 2 is gone (checkpointed); records at (3, 250) and (4, 60) were lost to damage.
  const segments: SegmentState[] = [3, 4].map((seq) => ({ seq, size: 1000, written: 1000, unsettled: 0, pendingCuts: 0 }));
  const a = record(3, 100, 4);
  const e = record(3, 150, 1);
  const b = record(3, 200, 2);
  const c = record(4, 20, 3);
  const d = record(4, 100, 3);
  const cuts = [
    cutAt(3, 'z', 3, [2, 50, 0], [2, 60, 1]), // its first segment gone: settled
    cutAt(3, 'x', 4, [3, 100, 0], [3, 100, 4]), // done
    cutAt(4, 'y', 3, [3, 200, 0], [4, 20, 1]), // to send again: all of b, the first of c
    cutAt(4, 'w', 4, [4, 20, 1], [4, 60, 1]), // damage took (4, 60): the rest sent only where its key is free
    cutAt(4, 'v', 1, [4, 100, 0], [4, 100, 1]), // the last cut, ending inside d
  ];
  const lines: { msg: string; id?: string; rebatched?: number }[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as { msg: string; id?: string; rebatched?: number }) });

  const damage = [{ seg: 3, off: 250, bytes: 40, events: true }, { seg: 4, off: 60, bytes: 40, events: true }];
  const got = rebuild(segments, cuts, new Set(['x']), [a, e, b, c, d], damage, log);

  t.same(
    got.batches.map((x) => ({ id: x.id, key: x.key, events: x.events, bytes: x.bytes, pieces: x.segments.map((p) => [p.entry, p.from, p.to]) })),
    [
      { id: 'y', key: 'raw/y.jsonl.gz', events: 3, bytes: lineBytes(b, 0, 2) + lineBytes(c, 0, 1), pieces: [[b.entry, 0, 2], [c.entry, 0, 1]] },
      { id: 'w', key: 'raw/w.jsonl.gz', events: 2, bytes: lineBytes(c, 1, 3), pieces: [[c.entry, 1, 3]] },
      { id: 'v', key: 'raw/v.jsonl.gz', events: 1, bytes: lineBytes(d, 0, 1), pieces: [[d.entry, 0, 1]] },
    ],
  );
  t.same(got.batches.map((x) => x.ifAbsent === true), [false, true, false], 'only the batch cut short is PUT If-None-Match');
  t.same([...got.cutSegs], [['y', 4], ['w', 4], ['v', 4]]);
  t.equal(got.entries.length, 2);
  t.equal(got.entries[0], e.entry, 'a whole record is batched afresh as it was read');
  t.same(got.entries[1], { ...d.entry, spans: d.entry.spans.slice(2, 6), count: 2, wal: { seg: 4, off: 100, base: 1 } }, 'the rest of a record after the last cut');
  t.equal(got.events, 3 + 2 + 1 + 1 + 2);
  t.equal(got.lost, 2, 'the events of the record damage took from w');
  t.same(
    segments.map(({ seq, unsettled, pendingCuts }) => ({ seq, unsettled, pendingCuts })),
    [
      { seq: 3, unsettled: 2 + 1, pendingCuts: 0 },
      { seq: 4, unsettled: 1 + 2 + 1 + 2, pendingCuts: 3 },
    ],
  );
  t.same(
    lines.map((l) => [l.msg, l.id ?? l.rebatched]),
    [
      ['WAL: a batch is incomplete after a corrupt record; sent only where its key holds no object (If-None-Match)', 'w'],
      ['WAL: events before a damaged record lost their cut record to it; batched again under new keys (S3 may hold them twice)', 1],
    ],
  );
});

t.test('no cuts: every record batched afresh, nothing counted as batched again', async (t) => {
  const segments: SegmentState[] = [{ seq: 0, size: 100, written: 100, unsettled: 0, pendingCuts: 0 }];
  const records = [record(0, 16, 2), record(0, 80, 1)];
  const lines: unknown[] = [];
  const got = rebuild(segments, [], new Set(), records, [], pino({ level: 'info' }, { write: (line: string) => lines.push(line) }));
  t.same(got.batches, []);
  t.same(got.entries, records.map((r) => r.entry));
  t.equal(got.events, 3);
  t.equal(got.lost, 0);
  t.equal(segments[0]!.unsettled, 3);
  t.same(lines, []);
});

t.test('a batch whose cut record was lost with damage at the edge of its range (a stretch from its last record through its cut) is PUT If-None-Match too', async (t) => {
  // Segment 0: E1@16 E2@100 CUT1 E3@300 E4@400 E5@500 CUT2 E6@700 CUT3. C1 = E1, E2 (done);
  // C2 = E3, E4, E5[0] (its cut record lost); C3 = E5[1], E6. One damaged stretch from E5 through
  // CUT2: C2's range ends inside E5, the record that begins the stretch.
  const T = 1_800_000_000_000;
  const idAt = (first: number, [s, o, e]: Position) => `${first}-i-abcd1234-${s.toString(36)}-${o.toString(36)}-${e.toString(36)}`;
  const named = (first: number, from: Position, to: Position, events: number): CutRecord => {
    const id = idAt(first, from);
    return { id, key: objectKey('raw', first, id), events, first, last: first, from, to };
  };
  const at = (off: number, i: number): EventsAt => ({ ...record(0, off, 2), entry: { ...record(0, off, 2).entry, receivedAt: T + i } });
  const [e1, e2, e3, e4, e6] = [at(16, 0), at(100, 1), at(300, 2), at(400, 3), at(700, 5)];
  const c1 = named(T, [0, 16, 0], [0, 100, 2], 4);
  const c3 = named(T + 4, [0, 500, 1], [0, 700, 2], 3);
  const segments: SegmentState[] = [{ seq: 0, size: 1000, written: 1000, unsettled: 0, pendingCuts: 0 }];
  const damage = [{ seg: 0, off: 500, bytes: 150, events: true }];
  const got = rebuild(segments, [{ cut: c1, seg: 0 }, { cut: c3, seg: 0 }], new Set([c1.id]), [e1!, e2!, e3!, e4!, e6!], damage, pino({ level: 'silent' }));
  const c2 = got.batches.find((b) => b.id === idAt(T + 2, [0, 300, 0]));
  t.match(c2, { events: 4, ifAbsent: true }, 'rebuilt with 4 of its 5 events, and never to replace its complete object');
  t.match(got.batches.find((b) => b.id === c3.id), { events: 2, ifAbsent: true }, 'C3 lost E5[1] to the same stretch');
});

// Segment 0 holds E0..E(n-1) (two events each, at offsets 100, 200, ...) and the cuts of C0..C(n-1),
// C_i the batch of E_i, named as DiskAcks names it; `lost` are the cuts damage took, `prev` how
// many earlier starts each readable cut names (0: a cut written before `prev` existed).
const T = 1_800_000_000_000;
const idAt = (first: number, [s, o, e]: Position) => `${first}-i-abcd1234-${s.toString(36)}-${o.toString(36)}-${e.toString(36)}`;
const startOfBatch = (i: number, seg = 0): Position => [seg, 100 * (i + 1), 0];
function namedCut(i: number, prev: number, seg = 0): CutRecord {
  const from = startOfBatch(i, seg);
  const id = idAt(T + i, from);
  const starts = Array.from({ length: Math.min(prev, i) }, (_, k) => [...startOfBatch(i - Math.min(prev, i) + k, seg), T + i - Math.min(prev, i) + k] as const);
  return { id, key: objectKey('raw', T + i, id), events: 2, first: T + i, last: T + i, from, to: [seg, 100 * (i + 1), 2], ...(starts.length > 0 && { prev: starts }) };
}
const eventsAt = (i: number, seg = 0): EventsAt => {
  const r = record(seg, 100 * (i + 1), 2);
  return { ...r, entry: { ...r.entry, receivedAt: T + i } };
};

function rebuildWithLost(lost: readonly number[], prev: number, n = 6) {
  const segments: SegmentState[] = [{ seq: 0, size: 2000, written: 2000, unsettled: 0, pendingCuts: 0 }];
  const records = Array.from({ length: n }, (_, i) => eventsAt(i));
  const cuts = records.map((_, i) => ({ cut: namedCut(i, prev), seg: 0 })).filter((_, i) => !lost.includes(i));
  const damage = lost.map((i) => ({ seg: 0, off: 1000 + 20 * i, bytes: 20, events: false }));
  const got = rebuild(segments, cuts, new Set(), records, damage, pino({ level: 'silent' }));
  return { got, records, segments };
}

const summary = (got: ReturnType<typeof rebuild>) => got.batches.map((b) => ({ id: b.id, key: b.key, events: b.events, pieces: b.segments.map((p) => [p.entry.wal!.off, p.from, p.to]) })).sort((a, b) => a.pieces[0]![0]! - b.pieces[0]![0]!);
const exact = (i: number) => ({ id: idAt(T + i, startOfBatch(i)), key: objectKey('raw', T + i, idAt(T + i, startOfBatch(i))), events: 2, pieces: [[100 * (i + 1), 0, 2]] });

t.test('two and three cut records lost in a row: each batch rebuilt under its own id and key, from the starts a later cut names', async (t) => {
  for (const lost of [[1, 2], [1, 2, 3], [2, 3, 4]]) {
    const { got, segments } = rebuildWithLost(lost, 4);
    t.same(summary(got), [0, 1, 2, 3, 4, 5].map(exact), `lost ${lost.join(', ')}: every batch as it was cut`);
    t.same(got.entries, [], `lost ${lost.join(', ')}: nothing batched afresh`);
    t.equal(segments[0]!.unsettled, 12);
    t.equal(got.lost, 0);
  }
});

t.test('K + 1 = 5 cut records lost in a row are all rebuilt exactly; K + 2 = 6 merge one batch into the one before it (the limit docs/durability.md states)', async (t) => {
  // Lost C1..C5: C1 starts where C0 ends, C6 names C2..C5. Lost C1..C6: C7 names C3..C6, and
  // nothing names C2's start, so its events go into C1's object.
  t.same(summary(rebuildWithLost([1, 2, 3, 4, 5], 4, 7).got), [0, 1, 2, 3, 4, 5, 6].map(exact));
  const merged = { ...exact(1), events: 4, pieces: [[200, 0, 2], [300, 0, 2]] };
  t.same(summary(rebuildWithLost([1, 2, 3, 4, 5, 6], 4, 8).got), [exact(0), merged, ...[3, 4, 5, 6, 7].map(exact)]);
});

t.test('cut records written before `prev`: one lost is rebuilt exactly as before, two in a row merge as before', async (t) => {
  t.same(summary(rebuildWithLost([2], 0).got), [0, 1, 2, 3, 4, 5].map(exact));
  const { got } = rebuildWithLost([2, 3], 0);
  t.same(summary(got), [exact(0), exact(1), { ...exact(2), events: 4, pieces: [[300, 0, 2], [400, 0, 2]] }, exact(4), exact(5)]);
});

t.test('a batch that began in a deleted segment and lost its cut record: its last events are settled, not sent under a new key', async (t) => {
  // Segment 0 is gone (all settled): C0 began there and ran into segment 1 up to E1; C1's cut
  // record names C0's start in `prev`. C0's cut record, in segment 1, was lost.
  const segments: SegmentState[] = [{ seq: 1, size: 1000, written: 1000, unsettled: 0, pendingCuts: 0 }];
  const tail = record(1, 50, 2);
  const e1 = eventsAt(1, 1);
  const c1: CutRecord = { ...namedCut(1, 0, 1), prev: [[...startOfBatch(0, 0), T]] };
  const got = rebuild(segments, [{ cut: c1, seg: 1 }], new Set(), [tail, e1], [{ seg: 1, off: 300, bytes: 40, events: false }], pino({ level: 'silent' }));
  t.same(summary(got), [{ id: c1.id, key: c1.key, events: 2, pieces: [[200, 0, 2]] }], 'only C1 is sent again');
  t.same(got.entries, [], 'the tail of C0 is not batched afresh');
  t.equal(segments[0]!.unsettled, 2, 'the tail of C0 does not hold segment 1');
});

t.test('a batch whose cut record and first events record were both lost: named by a later cut, sent under its own key, If-None-Match', async (t) => {
  // C0 = E0; C1 = E1a (lost) and E1b; C2 = E2; C3 = E3, naming C0..C2. C1's and C2's cut records lost.
  const segments: SegmentState[] = [{ seq: 0, size: 2000, written: 2000, unsettled: 0, pendingCuts: 0 }];
  const e1b = { ...record(0, 250, 2), entry: { ...record(0, 250, 2).entry, receivedAt: T + 1.5 } };
  const c3 = { ...namedCut(3, 4), prev: [0, 1, 2].map((i) => [...startOfBatch(i), T + i] as const) };
  const damage = [{ seg: 0, off: 200, bytes: 50, events: true }, { seg: 0, off: 1000, bytes: 40, events: false }];
  const got = rebuild(segments, [{ cut: namedCut(0, 4), seg: 0 }, { cut: c3, seg: 0 }], new Set(), [eventsAt(0), e1b, eventsAt(2), eventsAt(3)], damage, pino({ level: 'silent' }));
  t.same(summary(got), [exact(0), { ...exact(1), pieces: [[250, 0, 2]] }, exact(2), exact(3)], 'C1 under the id and key it had, though its first event is gone');
  t.same(got.batches.map((b) => b.ifAbsent === true), [false, false, true, false], 'C1, cut short, only where its key is free');
});
