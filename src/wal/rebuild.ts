// Replay's last step, on what its passes over the WAL found (./replay.ts): the cut batches to send
// again under their keys, the events to batch afresh, and what each segment is left holding.
// No I/O: a function of the cut and done records and of the events records read.
import type { Logger } from 'pino';
import type { Entry } from '../channel.js';
import { type Batch, LINE_OVERHEAD_BYTES, objectKey, type Segment } from '../upload/batcher.js';
import { codecOfKey, EXTENSIONS } from '../upload/codec.js';
import { fieldBytes, partitionOf } from '../upload/partition.js';
import { comparePositions, type CutRecord, type Position, type PrevCut, type Skipped } from './format.js';
import type { SegmentState } from './log.js';

/** An events record replay read, and the entry made of it. */
export interface EventsAt {
  readonly seg: number;
  readonly off: number;
  readonly count: number;
  readonly entry: Entry;
}

/** A corrupt stretch replay skipped, and its segment. */
export interface Damage extends Skipped {
  readonly seg: number;
}

/** A cut record and the segment that holds it. */
export interface CutAt {
  readonly cut: CutRecord;
  readonly seg: number;
}

/** What the WAL holds that is not settled. */
export interface Rebuilt {
  /** Cut before the crash and not known settled: to PUT again, under their keys. */
  readonly batches: Batch[];
  /** Which segment holds each batch's cut record. */
  readonly cutSegs: Map<string, number>;
  /** Events in no cut, in log order. */
  readonly entries: Entry[];
  /** Events in `batches` and `entries`. */
  readonly events: number;
  /** Events of batches that a corrupt record cut short, missing from the WAL (sent only where their key is free). */
  readonly lost: number;
}

/** What each events record has in some cut (settled or not), as [from, to) event ranges. */
type InCuts = Map<EventsAt, [number, number][]>;

/**
 * The batches and entries to send from `cuts` (sorted by where each starts), the ids of the
 * batches done, `events`, the events records read (in log order: every one a cut not done
 * covers, and every one no cut covers), and `damage`, the corrupt stretches skipped (in log order);
 * adds what each segment is left holding to `segments` (oldest first), the unsettled events and the
 * pending cuts.
 */
export function rebuild(segments: readonly SegmentState[], cuts: readonly CutAt[], done: ReadonlySet<string>, events: readonly EventsAt[], damage: readonly Damage[], log: Logger): Rebuilt {
  const bySeq = new Map(segments.map((s) => [s.seq, s]));
  const inCuts: InCuts = new Map();
  const firstPresent = segments[0]?.seq ?? Number.POSITIVE_INFINITY;
  const resent = resendCuts(cuts, done, events, inCuts, bySeq, firstPresent, log);
  // Partitioned cuts are not contiguous: a lost one cannot be told from the cuts around it.
  const partitioned = cuts.some(({ cut }) => cut.part !== undefined);
  const lostCuts = damage.length > 0 && !partitioned ? rebuildLostCuts(cuts, done, events, inCuts, damage, bySeq, firstPresent, log) : { batches: [], events: 0, lost: 0 };
  const afresh = batchAfresh(events, inCuts, noCutAfter(cuts), bySeq);
  if (afresh.rebatched > 0) log.error({ rebatched: afresh.rebatched }, 'WAL: events before a damaged record lost their cut record to it; batched again under new keys (S3 may hold them twice)');
  return {
    batches: [...resent.batches, ...lostCuts.batches],
    cutSegs: resent.cutSegs,
    entries: afresh.entries,
    events: resent.events + lostCuts.events + afresh.events,
    lost: resent.lost + lostCuts.lost,
  };
}

/** The cut batches with no done record whose events are all there, as batches; notes every cut's pieces in `inCuts`. */
function resendCuts(cuts: readonly CutAt[], done: ReadonlySet<string>, events: readonly EventsAt[], inCuts: InCuts, bySeq: Map<number, SegmentState>, firstPresent: number, log: Logger) {
  const batches: Batch[] = [];
  const cutSegs = new Map<string, number>();
  let lost = 0;
  let total = 0;
  let i = 0;
  for (const { cut, seg: cutSeg } of cuts) {
    while (i < events.length && before(events[i]!, cut.from)) i++;
    const { pieces, found, bytes } = gather(cut, events, i, inCuts);
    if (done.has(cut.id)) continue;
    const short = found !== cut.events;
    // Its first segment gone: every event in it, hence the batch, was settled.
    if (short && cut.from[0] < firstPresent) continue;
    if (short) lost += incomplete(cut.id, cut.key, cut.events, found, log);
    batches.push({ id: cut.id, key: cut.key, events: found, bytes, firstReceivedAt: cut.first, lastReceivedAt: cut.last, segments: pieces, ...(short && { ifAbsent: true }) });
    cutSegs.set(cut.id, cutSeg);
    bySeq.get(cutSeg)!.pendingCuts++;
    for (const p of pieces) bySeq.get(p.entry.wal!.seg)!.unsettled += p.to - p.from;
    total += found;
  }
  return { batches, cutSegs, events: total, lost };
}

/**
 * The pieces of the events records from index `i` on that `cut` covers (of a partitioned cut, only
 * the runs of events of its value), with their events and line bytes; each noted in `inCuts`.
 */
function gather(cut: { readonly from: Position; readonly to: Position; readonly part?: CutRecord['part'] }, events: readonly EventsAt[], i: number, inCuts: InCuts): { pieces: Segment[]; found: number; bytes: number } {
  const pieces: Segment[] = [];
  let found = 0;
  let bytes = 0;
  const field = cut.part === undefined ? undefined : fieldBytes(cut.part.field);
  for (let j = i; j < events.length && (before(events[j]!, cut.to) || isRecordOf(events[j]!, cut.to)); j++) {
    const at = events[j]!;
    const from = isRecordOf(at, cut.from) ? cut.from[2] : 0;
    const to = isRecordOf(at, cut.to) ? cut.to[2] : at.count;
    for (const [a, b] of field === undefined ? [[from, to] as const] : runsOf(at.entry, from, to, field, cut.part!.value)) {
      if (b <= a) continue;
      inCuts.set(at, [...(inCuts.get(at) ?? []), [a, b]]);
      pieces.push({ entry: at.entry, from: a, to: b });
      found += b - a;
      bytes += lineBytes(at.entry, a, b);
    }
  }
  return { pieces, found, bytes };
}

/** The runs [from, to) of consecutive events among [from, to) of an entry whose `field` has the key-safe `value`. */
function runsOf(entry: Entry, from: number, to: number, field: Buffer, value: string): [number, number][] {
  const runs: [number, number][] = [];
  for (let k = from; k < to; k++) {
    if (partitionOf(entry.body, entry.spans[2 * k]!, entry.spans[2 * k + 1]!, field) !== value) continue;
    const last = runs.at(-1);
    if (last !== undefined && last[1] === k) last[1] = k + 1;
    else runs.push([k, k + 1]);
  }
  return runs;
}

/**
 * A batch a corrupt record took events from, logged: it is sent with what is left, only where its
 * key holds no object (the complete one may be there). Returns the events missing from the WAL
 * (`events`, from its cut record, when known), counted lost: they are, unless that object is there.
 */
function incomplete(id: string, key: string, events: number | undefined, found: number, log: Logger): number {
  log.error({ id, key, events, found }, 'WAL: a batch is incomplete after a corrupt record; sent only where its key holds no object (If-None-Match)');
  return events === undefined ? 0 : events - found;
}

/**
 * The batches whose cut record was corrupt, between readable cuts, rebuilt under the ids and keys
 * they had (see "what a lost record costs" in ./format.ts): each stretch of the log between the end
 * of a readable cut (or the start of the first segment left) and the start of the next, split where
 * a done record without a readable cut or a readable cut's `prev` says a batch starts (knownStarts).
 * A piece is one batch, or several whose starts nothing names (their events then go into the first
 * one's object); the rest of a batch begun in a deleted segment is left out (settledTailEnd). One with a
 * corrupt stretch inside it that may have held events is sent only where its key holds no object
 * (fewer events under its key must not replace the complete one), unless it is done. Their pieces are noted in `inCuts`. Without a
 * readable cut whose id and key can be read as the server makes them, nothing is rebuilt here and
 * batchAfresh sends these events under new keys.
 */
function rebuildLostCuts(cuts: readonly CutAt[], done: ReadonlySet<string>, events: readonly EventsAt[], inCuts: InCuts, damage: readonly Damage[], bySeq: Map<number, SegmentState>, firstPresent: number, log: Logger) {
  const batches: Batch[] = [];
  let total = 0;
  let lost = 0;
  const naming = namingOf(cuts);
  if (naming === undefined) return { batches, events: total, lost };
  const settledTo = settledTailEnd(cuts, firstPresent);
  const starts = knownStarts(cuts, done, naming.middle);
  let i = 0;
  for (const [from, to] of stretches(cuts, [...starts.values()].map(([s, o, e]) => [s, o, e] as const), firstPresent)) {
    while (i < events.length && before(events[i]!, from)) i++;
    const { pieces, found, bytes } = gather({ from, to }, events, i, inCuts);
    // The rest of a batch that began in a segment already deleted: settled (noted in inCuts, not sent).
    if (found === 0 || (settledTo !== undefined && comparePositions(to, settledTo) <= 0)) continue;
    const first = pieces[0]!;
    const wal = first.entry.wal!;
    // A start some record names, with its first event's time: exact even when its first events record was lost.
    const named = starts.get(String(from));
    const [firstAt, start]: [number, Position] = named === undefined ? [first.entry.receivedAt, [wal.seg, wal.off, wal.base + first.from]] : [named[3], from];
    const id = batchIdAt(firstAt, naming.middle, start);
    const key = objectKey(naming.prefix, firstAt, id, naming.extension);
    const short = damage.some((d) => d.events && overlaps(d, from, to));
    if (short && done.has(id)) continue; // settled: S3 (or the DLQ) has it whole
    if (short) lost += incomplete(id, key, undefined, found, log);
    else log.warn({ id, key, events: found }, 'WAL: a batch whose cut record was corrupt is sent again under its key, rebuilt from the cuts around it');
    batches.push({ id, key, events: found, bytes, firstReceivedAt: firstAt, lastReceivedAt: pieces.at(-1)!.entry.receivedAt, segments: pieces, ...(short && { ifAbsent: true }) });
    for (const p of pieces) bySeq.get(p.entry.wal!.seg)!.unsettled += p.to - p.from;
    total += found;
  }
  return { batches, events: total, lost };
}

/**
 * Where batches whose cut records were lost are known to start, with their first event's time, by
 * position (as text): the ids of done records with no readable cut (an id holds both) and the
 * `prev` of every readable cut.
 */
function knownStarts(cuts: readonly CutAt[], done: ReadonlySet<string>, middle: string): Map<string, PrevCut> {
  const known = new Set(cuts.map(({ cut }) => cut.id));
  const named = [...done].filter((id) => !known.has(id)).map((id) => startOf(id, middle));
  const all = [...named.filter((p) => p !== undefined), ...cuts.flatMap(({ cut }) => cut.prev ?? [])];
  return new Map(all.map((p) => [String(p.slice(0, 3)), p]));
}

/**
 * Where the batch that began in a segment already deleted ends, when a readable cut names its start
 * and the next one (its `prev` and `from` are the starts of consecutive batches): that batch was
 * settled (a segment is deleted only once every event in it is), so its events in the first segment
 * left, before that end, are not sent again. Undefined when no cut says.
 */
function settledTailEnd(cuts: readonly CutAt[], firstPresent: number): Position | undefined {
  for (const { cut } of cuts) {
    const chain: Position[] = [...(cut.prev ?? []).map(([s, o, e]) => [s, o, e] as const), cut.from];
    for (let k = 0; k + 1 < chain.length; k++) if (chain[k]![0] < firstPresent && chain[k + 1]![0] >= firstPresent) return chain[k + 1];
  }
  return undefined;
}

/**
 * The stretches between readable cuts ([from, to), to exclusive), each split at `starts`. The first
 * begins at the first segment left, taken as where a batch starts unless settledTailEnd() says a
 * batch begun in a deleted segment runs into it: when no readable cut says so and that batch lost
 * its cut record, its last events are sent again under a new key (S3 may hold them twice).
 */
function stretches(cuts: readonly CutAt[], starts: readonly Position[], firstPresent: number): [Position, Position][] {
  const out: [Position, Position][] = [];
  let end: Position = [firstPresent, 0, 0];
  const sorted = [...starts].sort(comparePositions);
  for (const { cut } of cuts) {
    if (comparePositions(cut.from, end) > 0) {
      const inside = sorted.filter((p) => comparePositions(p, end) > 0 && comparePositions(p, cut.from) < 0);
      const bounds = [end, ...inside, cut.from];
      for (let k = 0; k + 1 < bounds.length; k++) out.push([bounds[k]!, bounds[k + 1]!]);
    }
    if (comparePositions(cut.to, end) > 0) end = cut.to;
  }
  return out;
}

/** How this log names its batches, read from a readable cut: its id's `{instance}-{log id}`, its key's prefix and extension (checked by making them again). */
function namingOf(cuts: readonly CutAt[]): { middle: string; prefix: string; extension: string } | undefined {
  for (const { cut } of cuts) {
    const parts = cut.id.split('-');
    if (parts.length < 6) continue;
    const middle = parts.slice(1, -3).join('-');
    const extension = EXTENSIONS[codecOfKey(cut.key)];
    const prefix = cut.key.slice(0, Math.max(0, cut.key.length - `/0000/00/00/00/${cut.id}${extension}`.length));
    if (batchIdAt(cut.first, middle, cut.from) === cut.id && objectKey(prefix, cut.first, cut.id, extension) === cut.key) return { middle, prefix, extension };
  }
  return undefined;
}

/** A batch id as DiskAcks.batchId makes it (src/acks.ts): `{first}-{instance}-{log id}-{segment}-{offset}-{event}`, the last three in base 36. */
function batchIdAt(firstReceivedAt: number, middle: string, [seg, off, ev]: Position): string {
  return `${firstReceivedAt}-${middle}-${seg.toString(36)}-${off.toString(36)}-${ev.toString(36)}`;
}

/** Where the batch of a done record's id starts, and its first event's time, when the id is this log's (`middle`). */
function startOf(id: string, middle: string): PrevCut | undefined {
  const m = /^(\d+)-(.+)-([0-9a-z]+)-([0-9a-z]+)-([0-9a-z]+)$/.exec(id);
  if (m === null || m[2] !== middle) return undefined;
  return [parseInt(m[3]!, 36), parseInt(m[4]!, 36), parseInt(m[5]!, 36), Number(m[1])];
}

/**
 * Whether a damaged stretch may have held events of the batch [from, to): it overlaps the records
 * from `from`'s (whose events from `from[2]` on are the batch's) up to `to`'s, that one included
 * when the batch holds its first `to[2]` events. A stretch that begins before `from` and runs
 * into the range counts too.
 */
function overlaps(d: Damage, from: Position, to: Position): boolean {
  const endsAfterStart = d.seg > from[0] || (d.seg === from[0] && d.off + d.bytes > from[1]);
  const startsBeforeEnd = compareRecords(to, d.seg, d.off) > 0 || (compareRecords(to, d.seg, d.off) === 0 && to[2] > 0);
  return endsAfterStart && startsBeforeEnd;
}

/** Where an events record (seg, off) is against a position: its event index is left out. */
export function compareRecords(p: Position, seg: number, off: number): number {
  return p[0] - seg || p[1] - off;
}

/**
 * Events in no cut, batched afresh: those after the end of the last cut (never in a batch that
 * could have reached S3), and those before it whose cut record a damaged segment lost (their
 * batch may have been PUT already: sent again under a new key, at least once), counted in `rebatched`.
 */
function batchAfresh(events: readonly EventsAt[], inCuts: InCuts, end: Position | undefined, bySeq: Map<number, SegmentState>) {
  const entries: Entry[] = [];
  let total = 0;
  let rebatched = 0;
  for (const at of events) {
    let from = 0;
    const ranges: [number, number][] = [...(inCuts.get(at) ?? []), [at.count, at.count]];
    for (const [cutFrom, cutTo] of ranges.sort((x, y) => x[0] - y[0])) {
      if (cutFrom > from) {
        entries.push(entryOf(at, from, cutFrom));
        bySeq.get(at.seg)!.unsettled += cutFrom - from;
        total += cutFrom - from;
        rebatched += countBefore(at, from, cutFrom, end);
      }
      from = Math.max(from, cutTo);
    }
  }
  return { entries, events: total, rebatched };
}

/** Events [from, to) of a record as an entry: the record's own when that is all of it. */
function entryOf(at: EventsAt, from: number, to: number): Entry {
  const e = at.entry;
  if (from === 0 && to === at.count) return e;
  return { receivedAt: e.receivedAt, body: e.body, spans: e.spans.slice(2 * from, 2 * to), count: to - from, bytes: e.bytes, wal: { seg: at.seg, off: at.off, base: from } };
}

/** How many of events [from, to) of a record are before `end` (none when there is no end). */
function countBefore(at: EventsAt, from: number, to: number, end: Position | undefined): number {
  if (end === undefined) return 0;
  if (before(at, end)) return to - from;
  return isRecordOf(at, end) ? Math.max(0, Math.min(to, end[2]) - from) : 0;
}

/**
 * Where events in no cut may begin: the latest of the cuts' `open` (a partitioned cut's first event
 * in no cut when it was made) or, without one, `to`; undefined for no cut. Every event before it
 * was in a cut (format.ts, "events in no cut").
 */
export function noCutAfter(cuts: readonly { readonly cut: CutRecord }[]): Position | undefined {
  return cuts.reduce<Position | undefined>((end, { cut }) => {
    const open = cut.open ?? cut.to;
    return end === undefined || comparePositions(open, end) > 0 ? open : end;
  }, undefined);
}

/** The bytes events [from, to) of an entry take as JSON lines. */
function lineBytes(entry: Entry, from: number, to: number): number {
  let bytes = 0;
  for (let k = from; k < to; k++) bytes += LINE_OVERHEAD_BYTES + entry.spans[2 * k + 1]! - entry.spans[2 * k]!;
  return bytes;
}

/** Whether a record is before the one a position names. */
const before = (e: EventsAt, p: Position): boolean => e.seg < p[0] || (e.seg === p[0] && e.off < p[1]);

/** Whether a record is the one a position names. */
const isRecordOf = (e: EventsAt, p: Position): boolean => e.seg === p[0] && e.off === p[1];
