// Cuts the channel's events into batches on count, bytes or age (and with OBJECT_KEY, on a change of
// time partition), names them, encodes JSON lines. With an `{event.FIELD}` in OBJECT_KEY one batch
// is open per value of the field, at most PARTITIONS_MAX_OPEN (the one opened first is cut for a new
// value), so memory stays bounded for any number of values.
//
// Back-pressure: the batcher pulls from the channel only while every batch it has cut has been
// taken by the upload loop. When the loop is full, the batcher waits and the channel fills.
// Memory held here: the open batches plus at most one request's worth of cut batches (with
// partitions, up to PARTITIONS_MAX_OPEN of them: one request can close that many).
import { randomBytes } from 'node:crypto';
import type { Channel, Entry } from '../channel.js';
import type { CUT_REASONS } from '../metrics/upload.js';
import { type KeyTemplate, renderKey, timePartition } from '../config/key-template.js';
import { type Codec, EXTENSIONS } from './codec.js';
import { fieldBytes, partitionOf } from './partition.js';

/** Events `from` to `to` (exclusive) of one request inside a batch; they share its receive time. */
export interface Segment {
  readonly entry: Entry;
  readonly from: number;
  readonly to: number;
}

export interface Batch {
  /** Unique across the fleet, sortable by time, fixed at the cut: every retry PUTs the same key. */
  readonly id: string;
  readonly key: string;
  readonly events: number;
  /** Uncompressed bytes of the JSON lines. */
  readonly bytes: number;
  readonly firstReceivedAt: number;
  readonly lastReceivedAt: number;
  readonly segments: readonly Segment[];
  /** With a write-ahead log: resolves once the cut is durable; the first PUT waits for it. */
  readonly durable?: Promise<void> | undefined;
  /**
   * Replayed with fewer events than it was cut with (a corrupt WAL record took some): PUT only
   * where no object is (If-None-Match: *), so that it never replaces the complete object a PUT
   * before the crash may have stored; S3's 412 means that object is there.
   */
  readonly ifAbsent?: boolean;
  /**
   * With `{event.FIELD}`: the field and the batch's key-safe value; its events are those of that
   * value from its first to its last, not every event between. `openFrom`: the first event in no
   * cut when it was cut (undefined: every event before this batch's end is in one), from which on
   * a restart must read the write-ahead log for events in no batch.
   */
  readonly partition?: { readonly field: string; readonly value: string; readonly openFrom?: { readonly entry: Entry; readonly index: number } | undefined };
}

/**
 * What the ack level records of each cut (src/acks.ts): with a write-ahead log, an id fixed by
 * where the batch's first event is (the same after a restart), and the cut made durable.
 */
export interface CutRecorder {
  /** Undefined: the default id. */
  batchId(first: Segment, firstReceivedAt: number): string | undefined;
  /** Records the cut; the batch's first PUT waits for what this returns (it never rejects). */
  cut(batch: Batch): Promise<void> | undefined;
}

export interface BatchSink {
  hasRoom(): boolean;
  submit(batch: Batch): void;
}

export interface BatcherOptions {
  readonly maxEvents: number;
  readonly maxBytes: number;
  readonly maxAgeMs: number;
  readonly prefix: string;
  readonly instanceId: string;
  /** COMPRESSION: names the key's extension; unset: gzip. */
  readonly codec?: Codec;
  /**
   * OBJECT_KEY; unset: the default layout, `objectKey`, as before it could be set. Set (even to
   * the default's text), a batch is also cut when its time partition changes, and with an
   * `{event.FIELD}` one batch is open per value, at most `maxOpen` (PARTITIONS_MAX_OPEN).
   */
  readonly key?: { readonly template: KeyTemplate; readonly maxOpen: number };
}

export type CutReason = (typeof CUT_REASONS)[number];

/** What the batcher tells the metrics (src/metrics/upload.ts). */
export interface BatcherMetrics {
  readonly batchesCut: { inc(labels: { reason: CutReason }): void };
  readonly openBatches: { set(value: number): void };
}

/** `{"received_at":<13 digits>,"event":` + `}\n` around each event's text. */
export const LINE_OVERHEAD_BYTES = '{"received_at":0000000000000,"event":}\n'.length;

const CLOSE_BRACE = 0x7d;
const NEWLINE = 0x0a;

// Distinguishes this process from an earlier one with the same instance id (a restarted task).
const BOOT_TAG = randomBytes(3).toString('hex');

/** A batch being filled: one, or with an `{event.FIELD}` one per value. */
class Open {
  readonly segments: { entry: Entry; from: number; to: number }[] = [];
  events = 0;
  bytes = 0;
  first = 0;
  last = 0;
  timer: NodeJS.Timeout | undefined;

  constructor(
    /** The key-safe field value; undefined without `{event.FIELD}`. */
    readonly value: string | undefined,
    /** Its time partition (timePartition). */
    readonly time: number,
  ) {}
}

export class Batcher {
  /** Open batches by value ('' without a field), oldest opened first. */
  readonly #open = new Map<string, Open>();
  #sealed: Batch[] = [];
  #seq = 0;
  #draining = false;
  /** Partitioned: the request being batched and its next event not yet in a batch. */
  #cursor: { entry: Entry; index: number } | undefined;
  readonly #field: Buffer | undefined;

  constructor(
    private readonly channel: Channel,
    private readonly sink: BatchSink,
    private readonly options: BatcherOptions,
    private readonly recorder: CutRecorder,
    private readonly metrics?: BatcherMetrics,
  ) {
    const field = options.key?.template.field;
    this.#field = field === undefined ? undefined : fieldBytes(field);
  }

  /** Events in the open batches and in cut batches not yet taken by the sink. */
  get heldEvents(): number {
    let held = 0;
    for (const open of this.#open.values()) held += open.events;
    for (const batch of this.#sealed) held += batch.events;
    return held;
  }

  /** Moves events from the channel into batches and cut batches into the sink, while it has room. */
  drain(): void {
    if (this.#draining) return;
    this.#draining = true;
    try {
      for (;;) {
        while (this.#sealed.length > 0 && this.sink.hasRoom()) this.sink.submit(this.#sealed.shift()!);
        if (this.#sealed.length > 0) return;
        const entry = this.channel.shift();
        if (entry === undefined) return;
        if (this.#field === undefined) this.#append(entry);
        else this.#appendPartitioned(entry, this.#field);
      }
    } finally {
      this.#draining = false;
    }
  }

  /** Takes what the channel holds as far as the sink has room, and cuts the open batches now, whatever their size. */
  flush(): void {
    this.drain();
    for (const open of [...this.#open.values()]) this.#cut(open, 'flush');
    this.drain();
  }

  /** Without a field: one open batch, a request added whole or split event by event where it straddles a cut. */
  #append(entry: Entry): void {
    const { maxEvents, maxBytes } = this.options;
    let open = this.#openFor('', entry);
    // entry.bytes is what the entry holds: its events' bytes (and little else, see ParsedEvents).
    const lineBytes = entry.bytes + entry.count * LINE_OVERHEAD_BYTES;
    if (open.events + entry.count <= maxEvents && open.bytes + lineBytes <= maxBytes) {
      this.#add(open, entry, 0, entry.count, lineBytes);
    } else {
      // The request straddles a cut: take event by event what fits.
      let from = 0;
      let pieceBytes = 0;
      for (let i = 0; i < entry.count; i++) {
        const bytes = LINE_OVERHEAD_BYTES + entry.spans[2 * i + 1]! - entry.spans[2 * i]!;
        const held = open.events + (i - from);
        if (held > 0 && (held + 1 > maxEvents || open.bytes + pieceBytes + bytes > maxBytes)) {
          if (i > from) this.#add(open, entry, from, i, pieceBytes);
          this.#cut(open, held + 1 > maxEvents ? 'events' : 'bytes');
          open = this.#openFor('', entry);
          from = i;
          pieceBytes = 0;
        }
        pieceBytes += bytes;
      }
      this.#add(open, entry, from, entry.count, pieceBytes);
    }
    this.#cutIfFull(open);
  }

  /** With `{event.FIELD}`: each event to the open batch of its value, cut on the same limits. */
  #appendPartitioned(entry: Entry, field: Buffer): void {
    const { maxEvents, maxBytes } = this.options;
    const cursor = { entry, index: 0 };
    this.#cursor = cursor;
    for (let i = 0; i < entry.count; i++) {
      cursor.index = i;
      const start = entry.spans[2 * i]!;
      const end = entry.spans[2 * i + 1]!;
      const open = this.#openFor(partitionOf(entry.body, start, end, field), entry);
      const bytes = LINE_OVERHEAD_BYTES + end - start;
      if (open.events > 0 && (open.events + 1 > maxEvents || open.bytes + bytes > maxBytes)) {
        this.#cut(open, open.events + 1 > maxEvents ? 'events' : 'bytes');
        this.#add(this.#openFor(open.value!, entry), entry, i, i + 1, bytes);
      } else this.#add(open, entry, i, i + 1, bytes);
    }
    this.#cursor = undefined;
    for (const open of [...this.#open.values()]) this.#cutIfFull(open);
  }

  /**
   * The open batch for `value` that `entry` may join: a batch of another time partition is cut
   * first, and a new value past PARTITIONS_MAX_OPEN cuts the batch opened first.
   */
  #openFor(value: string, entry: Entry): Open {
    const key = this.options.key;
    const time = key === undefined ? 0 : timePartition(key.template, entry.receivedAt);
    let open = this.#open.get(value);
    if (open !== undefined && open.events > 0 && open.time !== time) {
      this.#cut(open, 'time');
      open = undefined;
    }
    if (open !== undefined) return open;
    if (key !== undefined && this.#open.size >= key.maxOpen) this.#cut(this.#open.values().next().value!, 'partitions');
    open = new Open(this.#field === undefined ? undefined : value, time);
    this.#open.set(value, open);
    this.metrics?.openBatches.set(this.#open.size);
    return open;
  }

  #add(open: Open, entry: Entry, from: number, to: number, bytes: number): void {
    if (open.events === 0) {
      open.first = entry.receivedAt;
      open.timer = setTimeout(() => this.#cutByAge(open), this.options.maxAgeMs);
    }
    const last = open.segments.at(-1);
    // Consecutive events of one request in one batch are one segment.
    if (last !== undefined && last.entry === entry && last.to === from) last.to = to;
    else open.segments.push({ entry, from, to });
    open.events += to - from;
    open.bytes += bytes;
    open.last = entry.receivedAt;
  }

  #cutIfFull(open: Open): void {
    if (open.events >= this.options.maxEvents) this.#cut(open, 'events');
    else if (open.bytes >= this.options.maxBytes) this.#cut(open, 'bytes');
  }

  /** BATCH_MAX_AGE_MS after its first event: what the channel holds is taken first, then the batch is cut if it is still open. */
  #cutByAge(open: Open): void {
    this.drain();
    if (this.#open.get(open.value ?? '') === open) this.#cut(open, 'age');
    this.drain();
  }

  #cut(open: Open, reason: CutReason): void {
    if (this.#open.get(open.value ?? '') === open) this.#open.delete(open.value ?? '');
    this.metrics?.openBatches.set(this.#open.size);
    if (open.events === 0) return;
    clearTimeout(open.timer);
    this.metrics?.batchesCut.inc({ reason });
    const id = this.recorder.batchId(open.segments[0]!, open.first) ?? `${open.first}-${this.options.instanceId}-${BOOT_TAG}-${(this.#seq++).toString(36).padStart(8, '0')}`;
    const batch: Batch = {
      id,
      key: this.#key(open, id),
      events: open.events,
      bytes: open.bytes,
      firstReceivedAt: open.first,
      lastReceivedAt: open.last,
      segments: open.segments,
      ...(this.#field !== undefined && { partition: { field: this.options.key!.template.field!, value: open.value!, openFrom: this.#openFrom() } }),
    };
    const durable = this.recorder.cut(batch);
    this.#sealed.push(durable === undefined ? batch : { ...batch, durable });
  }

  #key(open: Open, id: string): string {
    const extension = EXTENSIONS[this.options.codec ?? 'gzip'];
    const key = this.options.key;
    if (key === undefined) return objectKey(this.options.prefix, open.first, id, extension);
    return `${renderKey(key.template, { prefix: this.options.prefix, instance: this.options.instanceId, batch: id, first: open.first, value: open.value })}${extension}`;
  }

  /** The first event in no cut yet, at this cut: the first of the batch opened first, else the next of the request being batched. */
  #openFrom(): { entry: Entry; index: number } | undefined {
    const oldest = this.#open.values().next().value;
    if (oldest !== undefined && oldest.events > 0) return { entry: oldest.segments[0]!.entry, index: oldest.segments[0]!.from };
    return this.#cursor === undefined ? undefined : { ...this.#cursor };
  }
}

/** `{prefix}/YYYY/MM/DD/HH/{batchId}{extension}`, UTC hour of the batch's first event, as the README's "Stored objects" describes. */
export function objectKey(prefix: string, firstReceivedAt: number, batchId: string, extension = EXTENSIONS.gzip): string {
  const iso = new Date(firstReceivedAt).toISOString(); // 2026-11-23T16:25:50.123Z
  return `${prefix}/${iso.slice(0, 4)}/${iso.slice(5, 7)}/${iso.slice(8, 10)}/${iso.slice(11, 13)}/${batchId}${extension}`;
}

/** The uncompressed object body: `{"received_at":<ms>,"event":<event as sent>}` a line. */
export function encodeLines(batch: Batch): Buffer {
  // Exact size first (batch.bytes assumes 13-digit times), then each event's bytes copied from its
  // request body: no string is re-encoded, and each segment's head is written straight into the
  // output (a head Buffer per segment was an allocation per request of single events). (On Node 22
  // and later, Buffer.copy of a range is one native memcpy: no typed-array view per call.)
  const heads = batch.segments.map((s) => `{"received_at":${s.entry.receivedAt},"event":`);
  let size = 0;
  batch.segments.forEach(({ entry, from, to }, k) => {
    size += (heads[k]!.length + 2) * (to - from);
    for (let i = from; i < to; i++) size += entry.spans[2 * i + 1]! - entry.spans[2 * i]!;
  });
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  batch.segments.forEach(({ entry, from, to }, k) => {
    const head = heads[k]!;
    const headAt = at;
    for (let i = from; i < to; i++) {
      // The head as text once a segment, then copied from there: a copy costs less than a write.
      at += i === from ? out.write(head, at, 'latin1') : out.copy(out, at, headAt, headAt + head.length);
      at += entry.body.copy(out, at, entry.spans[2 * i], entry.spans[2 * i + 1]);
      out[at++] = CLOSE_BRACE;
      out[at++] = NEWLINE;
    }
  });
  return out;
}
