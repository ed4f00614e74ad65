// The client's suite, one for both runtimes: node.test.ts runs each scenario (scenarios.ts) in the
// test's own process, browser.test.ts in a Chromium page from another origin. The scenarios meet
// the real server (in process, S3 on loopback) where it can produce what they need, and the
// scripted one (scripted.ts) for faults; here is what each must come to.
import type { Test } from 'tap';
import type { ClientError } from '../../../clients/js/dist/index.js';
import type { S3Server } from '../../helpers/s3.js';
import { eventually, type Served } from '../../helpers/server.js';
import type { Outcome, ScenarioName } from './scenarios.js';
import { startScripted } from './scripted.js';

/** Runs one scenario against `endpoint` where the suite's runtime runs clients; `tag` marks its events. */
export type RunScenario = (name: ScenarioName, endpoint: string, tag: string) => Promise<unknown>;

const codes = (errors: ClientError[]): string[] => errors.map((e) => e.code);

/** The suite's server: the real one, storing in `s3`, with BATCH_MAX_AGE_MS short and MAX_EVENT_DEPTH 8. */
export const SUITE_ENV = { BATCH_MAX_AGE_MS: '50', MAX_EVENT_DEPTH: '8' };

export async function clientSuite(t: Test, run: RunScenario, runtime: string, s3: S3Server, server: Served): Promise<void> {
  const scripted = await startScripted(t);
  /** The `i` of every stored event tagged `tag`, sorted, once `n` of them are stored. */
  const stored = async (tag: string, n: number): Promise<number[]> => {
    let found: number[] = [];
    await eventually(async () => {
      found = (await s3.objects()).flatMap((o) => o.records.filter((r) => r.event.tag === tag).map((r) => r.event.i as number));
      return found.length >= n;
    });
    return found.sort((a, b) => a - b);
  };
  const range = (n: number, from = 0): number[] => Array.from({ length: n }, (_, i) => from + i);

  await t.test(`${runtime}: batches of maxBatchEvents, every event stored once`, async (t) => {
    const tag = `${runtime}-batches`;
    const before = await server.metric('http_requests_total', '{status="202"}');
    const outcome = (await run('batches', server.url, tag)) as Outcome;
    t.match(outcome.counts, { sent: 25, queued: 0, dropped: 0, refused: 0, failed: 0, retries: 0 });
    t.same(outcome.errors, []);
    t.equal((await server.metric('http_requests_total', '{status="202"}')) - before, 3, 'three requests: 10, 10 and 5 events');
    t.same(await stored(tag, 25), range(25));
  });

  await t.test(`${runtime}: batches under maxBatchBytes`, async (t) => {
    const tag = `${runtime}-bytes`;
    scripted.posts.length = 0;
    const outcome = (await run('bytes', scripted.endpoint, tag)) as Outcome;
    t.equal(outcome.counts.sent, 20);
    const sizes = scripted.posts.map((p) => Buffer.byteLength(p.body));
    t.ok(sizes.every((size) => size <= 512), `each body within 512 bytes: ${sizes.join(', ')}`);
    t.ok(sizes.slice(0, -1).every((size) => size > 400), 'and filled: each but the last could not take one more event');
    t.same(scripted.posts.flatMap((p) => (JSON.parse(p.body) as { i: number }[]).map((e) => e.i)), range(20), 'every event once, in order');
    t.ok(scripted.posts.every((p) => p.contentType === 'application/json'));
  });

  await t.test(`${runtime}: retries of one batch reuse its Idempotency-Key, honour Retry-After, and back off with jitter`, async (t) => {
    const tag = `${runtime}-retries`;
    scripted.posts.length = 0;
    // 409 in_progress: the server still holds the first attempt (its answer was lost); the retry gets that answer.
    scripted.script = [{ status: 503, error: 'queue_full', retryAfter: '1' }, { status: 409, error: 'in_progress', retryAfter: '1' }, 'reset', 'accept', 'accept'];
    const outcome = (await run('retries', scripted.endpoint, tag)) as Outcome;
    t.match(outcome.counts, { sent: 5, retries: 3, failed: 0, refused: 0 });
    t.same(outcome.errors, []);
    const keys = scripted.posts.map((p) => p.key);
    t.equal(keys.length, 5, 'four attempts of the first batch, one of the second');
    t.match(keys[0], /^[0-9a-f]{32}$/, 'a key of 128 random bits');
    t.same(new Set(keys.slice(0, 4)).size, 1, 'every attempt of a batch carries its key');
    t.not(keys[4], keys[0], 'the next batch has a key of its own');
    t.same(scripted.posts.slice(0, 4).map((p) => p.body), Array(4).fill(scripted.posts[0]!.body), 'and the same body');
    // retryBaseMs 100, retryMaxMs 150, random 0.5: after the 503 and the 409, Retry-After (1 s) plus the jitter.
    t.same(outcome.delays, [1000 + 50, 1000 + 75, 75], 'Retry-After, then the backoff with its jitter (capped), not retried at once');
  });

  await t.test(`${runtime}: a batch that keeps failing is given up after maxAttempts, counted and surfaced`, async (t) => {
    scripted.posts.length = 0;
    scripted.script = Array(3).fill({ status: 503, error: 'queue_full', retryAfter: '2' });
    const outcome = (await run('exhausted', scripted.endpoint, `${runtime}-exhausted`)) as Outcome;
    t.equal(scripted.posts.length, 3, 'maxAttempts requests');
    t.match(outcome.counts, { sent: 0, failed: 2, retries: 2 });
    t.match(outcome.errors, [{ code: 'retries_exhausted', status: 503, events: 2, message: /after 3 attempts.*queue_full/ }]);
    // Full jitter up to the backoff (1 s, then 2 s) on top of Retry-After's 2 s.
    t.same(outcome.delays.map(Math.round), [2999, 3998]);
  });

  await t.test(`${runtime}: an oversized event and a 400 are surfaced, not retried; what is valid is stored`, async (t) => {
    const tag = `${runtime}-refused`;
    const before = await server.metric('http_requests_total', '{status="400"}');
    const outcome = (await run('refused', server.url, tag)) as Outcome;
    t.same(codes(outcome.errors), ['event_too_large', 'invalid_event', 'too_deep'], 'the client\'s codes, then the server\'s');
    t.match(outcome.errors[2], { status: 400, events: 1 });
    t.equal((await server.metric('http_requests_total', '{status="400"}')) - before, 1, 'the 400 was not retried');
    t.match(outcome.counts, { sent: 2, refused: 3, retries: 0 });
    t.same(await stored(tag, 2), [0, 1]);
  });

  await t.test(`${runtime}: a full queue drops the oldest or the newest, counted`, async (t) => {
    const tag = `${runtime}-queue`;
    const { oldest, newest } = (await run('queue', server.url, tag)) as { oldest: Outcome; newest: Outcome };
    t.match(oldest.counts, { sent: 3, dropped: 2 });
    t.same(codes(oldest.errors), ['dropped', 'dropped']);
    t.match(newest.counts, { sent: 3, dropped: 2 });
    t.same(await stored(`${tag}-oldest`, 3), [2, 3, 4], 'the oldest dropped');
    t.same(await stored(`${tag}-newest`, 3), [0, 1, 2], 'the newest dropped');
  });
}
