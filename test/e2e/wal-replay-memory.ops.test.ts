// Start-up replay of a large WAL holds one segment's worth at most, not the WAL: a WAL of ~300 MB
// of settled segments (cut and done records: a first batch stalled for a long time keeps every
// later segment on disk) plus a few unsettled events, written with the project's own encoder,
// replayed by a real server whose peak RSS (VmHWM) is compared with a bound from its settings.
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { objectKey } from '../../src/upload/batcher.js';
import { CUT, type CutRecord, DONE, encodeEvents, encodeJson, type Position, segmentHeader, segmentName } from '../../src/wal/format.js';
import { audit, AckingClient } from '../harness/zero-loss.js';
import { jsonArray } from '../helpers/pipeline.js';
import { peakRss } from '../helpers/raw.js';
import { startS3 } from '../helpers/s3.js';
import { eventually, startServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

const MiB = 1024 * 1024;
const SEGMENT_BYTES = 16 * MiB;
const SEGMENTS = 20;
const LOG_ID = 'feedface';
const INSTANCE = 'replaymem';

/** A JSON array of `n` events `{"id":..., "pad":...}` and its spans. */
function body(ids: string[], padBytes: number): { body: Buffer; spans: number[] } {
  const pad = 'x'.repeat(padBytes);
  return jsonArray(ids.map((id) => JSON.stringify({ id, pad })));
}

/** Writes segments record by record, keeping track of positions as the server's log does. */
class Writer {
  seq = -1;
  off = 0;
  fd = -1;
  bytes = 0;
  batches = 0;
  constructor(readonly dir: string) {}
  next(): void {
    if (this.fd !== -1) closeSync(this.fd);
    this.seq++;
    this.fd = openSync(join(this.dir, segmentName(this.seq)), 'wx');
    this.off = 0;
    this.write([segmentHeader(LOG_ID)]);
  }
  write(bufs: Buffer[]): number {
    const at = this.off;
    for (const b of bufs) {
      writeSync(this.fd, b);
      this.off += b.length;
    }
    this.bytes += bufs.reduce((n, b) => n + b.length, 0);
    return at;
  }
  events(receivedAt: number, e: { body: Buffer; spans: number[] }): Position {
    return [this.seq, this.write(encodeEvents(receivedAt, e.spans, e.body)), 0];
  }
  cut(from: Position, to: Position, events: number, receivedAt: number): CutRecord {
    const id = `${receivedAt}-${INSTANCE}-${LOG_ID}-${from[0].toString(36)}-${from[1].toString(36)}-${from[2].toString(36)}`;
    const cut: CutRecord = { id, key: objectKey('raw', receivedAt, id), events, first: receivedAt, last: receivedAt, from, to };
    this.write([encodeJson(CUT, cut)]);
    this.batches++;
    return cut;
  }
  done(id: string): void {
    this.write([encodeJson(DONE, { id })]);
  }
  close(): void {
    closeSync(this.fd);
  }
}

t.test('ACK_LEVEL=disk: replaying a ~300 MB WAL of settled segments stays within a few segments of memory; every unsettled event reaches S3 once', async (t) => {
  const s3 = await startS3(t);
  const walDir = tempDir(t, 'wal');
  const env = { ...s3.env, ACK_LEVEL: 'disk', WAL_DIR: walDir, INSTANCE_ID: INSTANCE, WAL_SEGMENT_BYTES: String(SEGMENT_BYTES), BATCH_MAX_AGE_MS: '100' };

  // What an idle server with these settings peaks at: the base of the bound.
  const idle = await startServer(t, { ...env, WAL_DIR: tempDir(t, 'wal-idle'), DLQ_DIR: tempDir(t, 'dlq-idle') });
  t.equal((await idle.post('[{"id":"warm-up"}]')).status, 202);
  await eventually(async () => (await idle.metric('s3_events_stored_total')) === 1, 600);
  const base = peakRss(idle.child.pid!);
  t.same(await idle.stop(), { code: 0, signal: null });

  // The ids the earlier run acknowledged and did not settle: only these may reach S3.
  const client = new AckingClient({ url: undefined, concurrency: 1, eventsPerRequest: 1, maxRequests: 0 });
  const ack = (ids: string[]) => {
    for (const id of ids) client.acked.add(id);
    return ids;
  };
  const ids = (tag: string, n: number) => Array.from({ length: n }, (_, i) => `${client.runId}-${tag}-${i}`);
  // Settled requests: 100 events of 10 KB, ~1 MB each; the same ids every time (never acked:
  // one uploaded again would be both unexpected and duplicated in the audit).
  const settled = body(ids('settled', 100), 10_000);
  let now = Date.now() - 3_600_000;
  const w = new Writer(walDir);
  w.next();
  // The first batch: cut, never done (its PUT stalled), so that no later segment is deleted.
  const stalled = body(ack(ids('stalled', 4)), 200);
  const s0 = w.events(now, stalled);
  w.cut(s0, [s0[0], s0[1], 4], 4, now);
  let unsettledBytes = stalled.body.length;
  let unsettledEvents = 4;
  for (let seg = 0; seg < SEGMENTS; seg++) {
    if (w.seq < seg) w.next();
    while (w.off + settled.body.length + 2048 < SEGMENT_BYTES) {
      now += 10;
      const at = w.events(now, settled);
      w.done(w.cut(at, [at[0], at[1], 100], 100, now).id);
    }
    if (seg === 9) {
      // A batch whose events span two segments, cut in the next one, never done.
      const a = body(ack(ids('span-a', 3)), 300);
      now += 10;
      const from = w.events(now, a);
      w.next();
      const b = body(ack(ids('span-b', 2)), 300);
      const to = w.events(now, b);
      w.cut(from, [to[0], to[1], 2], 5, now);
      unsettledBytes += a.body.length + b.body.length;
      unsettledEvents += 5;
    }
  }
  // The tail: a request whose first 2 events were in a settled batch, then one never cut.
  const split = body([`${client.runId}-settled-0`, `${client.runId}-settled-1`, ...ack(ids('split', 3))], 100);
  now += 10;
  const at = w.events(now, split);
  w.done(w.cut(at, [at[0], at[1], 2], 2, now).id);
  const tail = body(ack(ids('tail', 6)), 100);
  w.events(now + 1, tail);
  w.close();
  unsettledBytes += split.body.length + tail.body.length;
  unsettledEvents += 9;
  t.ok(w.bytes > 290 * MiB, `a WAL of ${(w.bytes / MiB).toFixed(0)} MiB in ${w.seq + 1} segments, ${w.batches} batches, ${unsettledEvents} events unsettled (${unsettledBytes} bytes)`);

  const started = performance.now();
  const server = await startServer(t, { ...env, DLQ_DIR: tempDir(t, 'dlq') });
  const replayMs = performance.now() - started;
  const replayed = peakRss(server.child.pid!);
  t.equal(await server.metric('wal_replayed_events_total'), unsettledEvents, 'every unsettled event is replayed');
  await eventually(async () => (await server.metric('s3_events_stored_total')) === unsettledEvents && (await server.metric('upload_inflight_batches')) === 0, 600);
  const peak = peakRss(server.child.pid!);
  // The base, one segment (replay reads a chunk of one at a time) and the unsettled events: never the WAL.
  const bound = base + SEGMENT_BYTES + unsettledBytes;
  t.ok(peak < bound, `peak RSS ${(peak / MiB).toFixed(0)} MiB (${(replayed / MiB).toFixed(0)} MiB once replayed) < ${(bound / MiB).toFixed(0)} MiB (idle ${(base / MiB).toFixed(0)} MiB + a segment + the unsettled events); WAL ${(w.bytes / MiB).toFixed(0)} MiB; start-up ${replayMs.toFixed(0)} ms`);
  await eventually(async () => (await server.metric('wal_segments_current')) <= 2, 600);
  t.same(await server.stop(), { code: 0, signal: null });
  t.ok(server.logs.some((l) => l.msg === 'WAL closed: every event settled'), 'the WAL is empty after a clean stop');
  const report = await audit(client, s3);
  t.same(report.missing, [], 'no unsettled event missing');
  t.same(report.duplicated, [], 'none stored twice');
  t.same(report.unexpected.slice(0, 5), [], `no settled event stored again (${report.unexpected.length})`);
  t.equal(report.inS3, unsettledEvents);
});
