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
