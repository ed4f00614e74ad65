// The Idempotency-Key table on an injected clock (what a key answers, when it is forgotten, what
// a refusal and the bound do), and the table in front of a real pipeline: at ACK_LEVEL=memory a
// repeat pushes nothing; at s3 a request answered unconfirmed holds its key until its events are
// stored, against a real S3-compatible server behind a proxy that slows its PUTs.
import { pino } from 'pino';
import { Registry } from 'prom-client';
import t from 'tap';
import type { Reply } from '../src/acks.js';
import type { IdemKey } from '../src/channel.js';
import { IdempotencyTable, IdempotentIntake, type Held } from '../src/idempotency.js';
import { createUploadMetrics } from '../src/metrics/upload.js';
import { createS3Client, S3Uploader } from '../src/upload/s3.js';
import { startPipeline } from '../src/wiring.js';
import { startFaultProxy } from './helpers/fault-proxy.js';
import { entry, pipelineOptions } from './helpers/pipeline.js';
import { BUCKET, startS3 } from './helpers/s3.js';
import { eventually } from './helpers/server.js';

const WINDOW_MS = 600_000;
const key = (k: string, hash = 7, bytes = 100): IdemKey => ({ key: k, hash, bytes });

function table(maxKeys = 10) {
  const clock = { now: 1_000_000 };
  return { clock, table: new IdempotencyTable(WINDOW_MS, maxKeys, () => clock.now) };
}

const held = (reply: Held | Reply): Held => {
  if (typeof reply === 'string') throw new Error(`expected a new key, got ${reply}`);
  return reply;
};

t.test('a repeat of an accepted request is its receipt again; while in flight, in_progress; with another body, key_reused', async (t) => {
  const { table: tab, clock } = table();
  const first = held(tab.begin(key('a'), clock.now));
  t.equal(tab.begin(key('a'), clock.now), 'in_progress', 'the first is not answered yet');
  tab.settle(first, 'accepted');
  t.equal(tab.begin(key('a'), clock.now), 'replayed_accepted');
  t.equal(tab.begin(key('a', 8), clock.now), 'key_reused', 'another hash');
  t.equal(tab.begin(key('a', 7, 101), clock.now), 'key_reused', 'another length');
  t.equal(tab.begin(key('a'), clock.now), 'replayed_accepted', 'a reuse does not change the key');
  t.same(tab.counts, { replays: 2, reused: 2, inProgress: 1, evicted: 0 });
  const s3 = held(tab.begin(key('b'), clock.now));
  tab.settle(s3, 'spilled');
  t.equal(tab.begin(key('b'), clock.now), 'replayed_spilled', 'ACK_LEVEL=s3: the answer said where');
  t.equal(tab.size, 2);
});

t.test('a refused first request does not use up its key; unconfirmed keeps it in flight until the late outcome', async (t) => {
  const { table: tab, clock } = table();
  for (const refusal of ['full', 'closed', 'not_stored', 'dlq_full'] as const) {
    tab.settle(held(tab.begin(key('a'), clock.now)), refusal);
    t.equal(tab.size, 0, `${refusal}: the key is free`);
  }
  const again = held(tab.begin(key('a', 9), clock.now));
  t.equal(tab.begin(key('a', 9), clock.now), 'in_progress', 'a new body may take a key a refusal freed');
  tab.settle(again, 'unconfirmed');
  t.equal(tab.begin(key('a', 9), clock.now), 'in_progress', 'unconfirmed: the events may still be stored');
  tab.settle(again, 'stored');
  t.equal(tab.begin(key('a', 9), clock.now), 'replayed_stored');
  const dropped = held(tab.begin(key('b'), clock.now));
  tab.settle(dropped, 'unconfirmed');
  tab.settle(dropped, 'not_stored');
  t.type(tab.begin(key('b'), clock.now), 'object', 'dropped after all: the key is free again');
});

t.test('a key is forgotten IDEMPOTENCY_WINDOW_SECONDS after its first request was received', async (t) => {
  const { table: tab, clock } = table();
  tab.settle(held(tab.begin(key('a'), clock.now)), 'accepted');
  clock.now += WINDOW_MS - 1;
  t.equal(tab.begin(key('a'), clock.now), 'replayed_accepted', 'a repeat does not extend the window');
  tab.settle(held(tab.begin(key('b'), clock.now)), 'accepted');
  clock.now += 1;
  const fresh = tab.begin(key('a', 99), clock.now);
  t.type(fresh, 'object', 'past the window the key is new, whatever the body');
  t.equal(tab.size, 2, 'a forgotten, then held again; b still held');
  t.equal(tab.counts.evicted, 0, 'expiry is not eviction');
  // Restored from the WAL: kept only within the window of when it was received.
  tab.restore(key('old'), clock.now - WINDOW_MS);
  tab.restore(key('recent'), clock.now - WINDOW_MS + 1000);
  t.equal(tab.begin(key('old'), clock.now) === 'replayed_accepted', false, 'received a window ago: not restored');
  t.equal(tab.begin(key('recent'), clock.now), 'replayed_accepted', 'restored as accepted');
});

t.test('IDEMPOTENCY_MAX_KEYS: the oldest key is evicted and counted; an evicted key in flight settles nothing', async (t) => {
  const { table: tab, clock } = table(3);
  const first = held(tab.begin(key('k0'), clock.now));
  for (let i = 1; i < 5; i++) tab.settle(held(tab.begin(key(`k${i}`), clock.now + i)), 'accepted');
  t.equal(tab.size, 3);
  t.equal(tab.counts.evicted, 2);
  tab.settle(first, 'accepted');
  t.type(tab.begin(key('k1'), clock.now), 'object', 'k1 was evicted: new again (and evicts k2)');
  t.equal(tab.begin(key('k3'), clock.now), 'replayed_accepted');
  t.equal(tab.size, 3);
  t.equal(tab.counts.evicted, 3);
});

t.test('many refused keys leave nothing behind: the bound still evicts the oldest key held first', async (t) => {
  const { table: tab, clock } = table(100);
  for (let i = 0; i < 5000; i++) tab.settle(held(tab.begin(key(`r${i}`), clock.now)), 'full');
  tab.settle(held(tab.begin(key('kept'), clock.now)), 'accepted');
  t.equal(tab.size, 1);
  t.equal(tab.begin(key('kept'), clock.now), 'replayed_accepted');
  for (let i = 0; i < 100; i++) tab.settle(held(tab.begin(key(`n${i}`), clock.now)), 'accepted');
  t.equal(tab.counts.evicted, 1, 'one over the bound');
  t.type(tab.begin(key('kept'), clock.now), 'object', 'the oldest live key went first');
});

t.test('in front of a real pipeline (memory): a repeat is answered from the table and pushes nothing', async (t) => {
  const s3 = await startS3(t);
  const log = pino({ level: 'silent' });
  const metrics = createUploadMetrics(new Registry());
  const uploader = new S3Uploader(s3.client, { bucket: BUCKET, maxAttempts: 1, timeoutMs: 2000 }, metrics, log);
  const running = await startPipeline({ options: pipelineOptions(1000), ackLevel: 'memory', ackTimeoutMs: 1000, fresh: () => true }, { uploader, spill: { save: () => Promise.resolve(true), full: false }, metrics, log });
  const intake = new IdempotentIntake(running.pipeline, new IdempotencyTable(WINDOW_MS, 10));
  const none = (): void => void t.fail('answered later');
  t.equal(intake.accept({ ...entry('{"a":1}'), idem: key('x') }, none), 'accepted');
  t.equal(intake.events, 1);
  t.equal(intake.accept({ ...entry('{"a":1}'), idem: key('x') }, none), 'replayed_accepted');
  t.equal(intake.accept({ ...entry('{"a":2}'), idem: key('x', 1) }, none), 'key_reused');
  t.equal(intake.accept(entry('{"a":1}'), none), 'accepted', 'no key: passed through');
  t.equal(intake.events, 2, 'the repeats pushed nothing');
  t.equal((await running.pipeline.close(Promise.resolve())).accepted, 2);
});

t.test('in front of a real pipeline (s3): unconfirmed keeps the key in flight (409) until the batch is stored, then replays stored', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  let slow = true;
  proxy.decide = () => (slow ? { delayMs: 400 } : 'pass');
  const client = createS3Client({ endpoint: proxy.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
  t.teardown(() => client.destroy());
  const log = pino({ level: 'silent' });
  const metrics = createUploadMetrics(new Registry());
  const uploader = new S3Uploader(client, { bucket: BUCKET, maxAttempts: 1, timeoutMs: 5000 }, metrics, log);
  const running = await startPipeline({ options: pipelineOptions(1), ackLevel: 's3', ackTimeoutMs: 100, fresh: () => true }, { uploader, spill: { save: () => Promise.resolve(true), full: false }, metrics, log });
  const tab = new IdempotencyTable(WINDOW_MS, 10);
  const intake = new IdempotentIntake(running.pipeline, tab);
  const answers: Reply[] = [];
  t.equal(intake.accept({ ...entry('{"a":1}'), idem: key('x') }, (r) => answers.push(r)), 'pending');
  await eventually(() => answers.length === 1, 100);
  t.same(answers, ['unconfirmed'], 'past ACK_TIMEOUT_MS');
  t.equal(intake.accept({ ...entry('{"a":1}'), idem: key('x') }, (r) => answers.push(r)), 'in_progress', 'the PUT is still in flight');
  slow = false;
  await eventually(() => intake.accept({ ...entry('{"a":1}'), idem: key('x') }, (r) => void answers.push(r)) === 'replayed_stored', 100);
  t.same(answers, ['unconfirmed'], 'answered once');
  t.equal((await running.pipeline.close(Promise.resolve())).stored, 1, 'stored once');
  t.equal((await s3.objects()).length, 1);
});
