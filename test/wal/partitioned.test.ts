// Partitioned batches (OBJECT_KEY with {event.FIELD} and a time variable) through the real write-ahead
// log: requests of mixed types go through DiskAcks into the real Batcher, which writes the cut
// records; some batches are settled, some PUT and not settled, some only cut, and the rest still
// open when the process "dies" (the log closed, the batcher dropped). recover() then rebuilds: S3 is
// modelled by keys (key -> event ids), the replayed batches PUT under their recorded keys and the
// events in no cut batched afresh by a new batcher. Every acknowledged event must be in S3 exactly
// once, every object holding only the type its key names, each replayed batch under the key it was
// cut with. Partitioned batches are not contiguous in the log, so this is what the cut record's
// `part` and `open` are for.
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import t from 'tap';
import { DiskAcks } from '../../src/acks.js';
import { Channel } from '../../src/channel.js';
import { parseKeyTemplate } from '../../src/config/key-template.js';
import { createWalMetrics } from '../../src/metrics/wal.js';
import { type Batch, Batcher, type CutRecorder } from '../../src/upload/batcher.js';
import { WriteAheadLog } from '../../src/wal/log.js';
import { recover } from '../../src/wal/replay.js';
import { Random } from '../chaos/random.js';
import { jsonArray } from '../helpers/pipeline.js';

const TYPES = ['click', 'view', 'buy', 'a/b', ''];
const KEY = { template: parseKeyTemplate('{prefix}/type={event.type}/hour={HH}/{batch}'), maxOpen: 3 };
const quiet = pino({ level: 'silent' });

interface Event {
  e: string;
  type?: string;
}

const eventsOf = (batch: Pick<Batch, 'segments'>): Event[] =>
  batch.segments.flatMap(({ entry, from, to }) => Array.from({ length: to - from }, (_, k) => JSON.parse(entry.body.subarray(entry.spans[2 * (from + k)]!, entry.spans[2 * (from + k) + 1]!).toString()) as Event));

/** A batcher on `recorder`, its cut batches collected. */
function batcher(recorder: CutRecorder, instanceId: string) {
  const channel = new Channel(1 << 20, 1 << 30);
  const batches: Batch[] = [];
  const b = new Batcher(channel, { hasRoom: () => true, submit: (batch) => batches.push(batch) }, { maxEvents: 4, maxBytes: 1 << 20, maxAgeMs: 3_600_000, prefix: 'raw', instanceId, key: KEY }, recorder);
  return { channel, batches, batcher: b };
}

/** A killed run: returns the model S3 (key -> events) and every acknowledged event id. */
async function killedRun(dir: string, seed: number) {
  const random = new Random(seed);
  const r = (n: number) => random.between(0, n - 1);
  mkdirSync(dir, { recursive: true });
  const recovered = await recover(dir, 'unit', createWalMetrics(new Registry()), quiet);
  const wal = new WriteAheadLog({ dir, maxBytes: 1 << 30, syncIntervalMs: 0, syncBytes: 1 << 20, segmentBytes: 2000 }, recovered.logId, recovered.segments, recovered.nextSeq, createWalMetrics(new Registry()), quiet);
  const acks = new DiskAcks(wal, 'i-1', recovered.cutSegs, () => true);
  let alive = true;
  // After the "kill" the batcher's age timers must not write to the closed log.
  const recorder: CutRecorder = { batchId: (first, at) => acks.batchId(first, at), cut: (batch) => (alive ? acks.cut(batch) : undefined) };
  const run = batcher(recorder, 'i-1');
  const s3 = new Map<string, Event[]>();
  const acked: string[] = [];
  const waits: Promise<unknown>[] = [];
  let settledUpTo = 0;
  for (let step = 0; step < 40; step++) {
    const n = 1 + r(5);
    const events = Array.from({ length: n }, (_, i): Event => ({ e: `${seed}-${step}-${i}`, ...(r(6) > 0 && { type: TYPES[r(TYPES.length)] }) }));
    const { body, spans } = jsonArray(events.map((e) => JSON.stringify(e)));
    // Now and then the next hour: time partitions cut batches too.
    const receivedAt = 1_800_000_000_000 + Math.floor(step / 15) * 3_600_000 + step;
    const outcome = acks.accept({ receivedAt, body, spans, count: n, bytes: body.length }, (entry) => run.channel.tryPush(entry), () => {});
    if (outcome !== 'pending') throw new Error(`refused: ${outcome}`);
    waits.push(new Promise<void>((resolve) => setImmediate(resolve)));
    acked.push(...events.map((e) => e.e));
    run.batcher.drain();
    // Some cut batches settle (stored): in S3 and done in the log.
    while (settledUpTo < run.batches.length && r(6) > 0) {
      const batch = run.batches[settledUpTo++]!;
      await batch.durable;
      s3.set(batch.key, eventsOf(batch));
      acks.settled(batch, 'stored');
    }
  }
  // Of the batches cut and not settled, some were PUT before the kill.
  for (const batch of run.batches.slice(settledUpTo)) {
    await batch.durable;
    if (r(2) === 0) s3.set(batch.key, eventsOf(batch));
  }
  await Promise.all(waits);
  const open = acked.length - run.batches.reduce((k, b) => k + b.events, 0);
  const cutKeys = new Map(run.batches.map((b) => [b.id, b.key]));
  alive = false;
  await wal.close();
  recovered.lock.release();
  run.batcher.flush(); // only its timers: the recorder writes nothing now, and these batches are dropped
  while (readdirSync(dir).filter((name) => name.endsWith('.wal')).length > wal.segments) await new Promise((resolve) => setImmediate(resolve));
  return { s3, acked, open, cutKeys };
}

t.test('partitioned batches across a kill: replay stores every acknowledged event exactly once, each under its own type, replayed batches under their keys', async (t) => {
  const root = t.testdir();
  let open = 0;
  let replayed = 0;
  for (let seed = 1; seed <= 12; seed++) {
    const dir = join(root, `w${seed}`);
    const { s3, acked, open: openAtKill, cutKeys } = await killedRun(dir, seed);
    open += openAtKill;
    const recovered = await recover(dir, 'unit', createWalMetrics(new Registry()), quiet);
    recovered.lock.release();
    t.equal(recovered.lost, 0, `seed ${seed}: nothing lost`);
    const rekeyed = recovered.batches.filter((batch) => batch.key !== cutKeys.get(batch.id));
    t.same(rekeyed.map((b) => b.key), [], `seed ${seed}: replayed batches under the keys they were cut with`);
    for (const batch of recovered.batches) s3.set(batch.key, eventsOf(batch));
    replayed += recovered.batches.length;
    const fresh = batcher({ batchId: () => undefined, cut: () => undefined }, 'i-2');
    for (const entry of recovered.entries) fresh.channel.restore(entry);
    fresh.batcher.flush();
    t.same(fresh.batches.filter((b) => s3.has(b.key)).map((b) => b.key), [], `seed ${seed}: batches afresh have keys of their own`);
    for (const batch of fresh.batches) s3.set(batch.key, eventsOf(batch));
    const stored = [...s3.values()].flat().map((e) => e.e);
    const twice = stored.filter((e, i) => stored.indexOf(e) !== i);
    t.same(twice, [], `seed ${seed}: nothing twice`);
    t.same([...stored].sort(), [...acked].sort(), `seed ${seed}: every acknowledged event stored`);
    const mixed = [...s3].filter(([key, events]) => {
      const type = /\/type=([^/]*)\//.exec(key)![1];
      return events.some((e) => (e.type === undefined || e.type === '' ? '__HIVE_DEFAULT_PARTITION__' : encodeURIComponent(e.type)) !== type);
    });
    t.same(mixed.map(([key]) => key), [], `seed ${seed}: every object holds only the type its key names`);
  }
  t.ok(open > 0 && replayed > 0, `the runs left events open (${open}) and batches to replay (${replayed})`);
});
