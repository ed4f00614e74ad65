// Cuts the channel's events into batches on count, bytes or age, names them, encodes JSON lines.
//
// Back-pressure: the batcher pulls from the channel only while every batch it has cut has been
// taken by the upload loop. When the loop is full, the batcher waits and the channel fills.
// Memory held here: the open batch plus at most one request's worth of cut batches.
import { randomBytes } from 'node:crypto';
import type { Channel, Entry } from '../channel.js';
import { type Codec, EXTENSIONS } from './codec.js';

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
}

/** `{"received_at":<13 digits>,"event":` + `}\n` around each event's text. */
export const LINE_OVERHEAD_BYTES = '{"received_at":0000000000000,"event":}\n'.length;

const CLOSE_BRACE = 0x7d;
const NEWLINE = 0x0a;

// Distinguishes this process from an earlier one with the same instance id (a restarted task).
const BOOT_TAG = randomBytes(3).toString('hex');

export class Batcher {
  #segments: Segment[] = [];
  #events = 0;
  #bytes = 0;
  #first = 0;
  #last = 0;
  #timer: NodeJS.Timeout | undefined;
  #sealed: Batch[] = [];
  #seq = 0;
  #draining = false;

  constructor(
    private readonly channel: Channel,
    private readonly sink: BatchSink,
    private readonly options: BatcherOptions,
    private readonly recorder: CutRecorder,
  ) {}

  /** Events in the open batch and in cut batches not yet taken by the sink. */
  get heldEvents(): number {
    let held = this.#events;
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
        this.#append(entry);
      }
    } finally {
      this.#draining = false;
    }
  }

  /** Takes what the channel holds as far as the sink has room, and cuts the open batch now, whatever its size. */
  flush(): void {
    this.drain();
    this.#cut();
    this.drain();
  }

  #append(entry: Entry): void {
    const { maxEvents, maxBytes } = this.options;
    // entry.bytes is what the entry holds: its events' bytes (and little else, see ParsedEvents).
    const lineBytes = entry.bytes + entry.count * LINE_OVERHEAD_BYTES;
    if (this.#events + entry.count <= maxEvents && this.#bytes + lineBytes <= maxBytes) {
      this.#add(entry, 0, entry.count, lineBytes);
    } else {
      // The request straddles a cut: take event by event what fits.
      let from = 0;
      let pieceBytes = 0;
      for (let i = 0; i < entry.count; i++) {
        const bytes = LINE_OVERHEAD_BYTES + entry.spans[2 * i + 1]! - entry.spans[2 * i]!;
        const held = this.#events + (i - from);
        if (held > 0 && (held + 1 > maxEvents || this.#bytes + pieceBytes + bytes > maxBytes)) {
          if (i > from) this.#add(entry, from, i, pieceBytes);
          this.#cut();
          from = i;
          pieceBytes = 0;
        }
        pieceBytes += bytes;
      }
      this.#add(entry, from, entry.count, pieceBytes);
    }
    if (this.#events >= maxEvents || this.#bytes >= maxBytes) this.#cut();
  }

  #add(entry: Entry, from: number, to: number, bytes: number): void {
    if (this.#events === 0) {
      this.#first = entry.receivedAt;
      this.#timer = setTimeout(() => this.flush(), this.options.maxAgeMs);
    }
    this.#segments.push({ entry, from, to });
    this.#events += to - from;
    this.#bytes += bytes;
    this.#last = entry.receivedAt;
  }

  #cut(): void {
    if (this.#events === 0) return;
    clearTimeout(this.#timer);
    const id = this.recorder.batchId(this.#segments[0]!, this.#first) ?? `${this.#first}-${this.options.instanceId}-${BOOT_TAG}-${(this.#seq++).toString(36).padStart(8, '0')}`;
    const batch: Batch = {
      id,
      key: objectKey(this.options.prefix, this.#first, id, EXTENSIONS[this.options.codec ?? 'gzip']),
      events: this.#events,
      bytes: this.#bytes,
      firstReceivedAt: this.#first,
      lastReceivedAt: this.#last,
      segments: this.#segments,
    };
    const durable = this.recorder.cut(batch);
    this.#sealed.push(durable === undefined ? batch : { ...batch, durable });
    this.#segments = [];
    this.#events = 0;
    this.#bytes = 0;
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
  // request body: no string is built or re-encoded. (On Node 22 and later, Buffer.copy of a range
  // is one native memcpy: no typed-array view per call.)
  const heads = batch.segments.map((s) => Buffer.from(`{"received_at":${s.entry.receivedAt},"event":`, 'latin1'));
  let size = 0;
  batch.segments.forEach(({ entry, from, to }, k) => {
    size += (heads[k]!.length + 2) * (to - from);
    for (let i = from; i < to; i++) size += entry.spans[2 * i + 1]! - entry.spans[2 * i]!;
  });
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  batch.segments.forEach(({ entry, from, to }, k) => {
    const head = heads[k]!;
    for (let i = from; i < to; i++) {
      at += head.copy(out, at);
      at += entry.body.copy(out, at, entry.spans[2 * i], entry.spans[2 * i + 1]);
      out[at++] = CLOSE_BRACE;
      out[at++] = NEWLINE;
    }
  });
  return out;
}
