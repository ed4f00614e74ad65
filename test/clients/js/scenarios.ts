// The client's scenarios, run as they are in Node (node.test.ts) and in a Chromium page from another
// origin (browser.test.ts, which serves this file transpiled): each drives a client of the built
// bundle (clients/js/dist/index.js) and returns what it saw, and the test checks that and what
// the server received. Nothing here may import anything at run time: the page loads it alone.
import type { Client, ClientError, ClientOptions, Counts, createClient } from '../../../clients/js/dist/index.js';

export type Create = typeof createClient;

export interface Outcome {
  counts: Counts;
  errors: ClientError[];
  /** What the client asked wait() for, between attempts. */
  delays: number[];
}

async function run(create: Create, options: ClientOptions, use: (client: Client) => Promise<void> | void): Promise<Outcome> {
  const errors: ClientError[] = [];
  const delays: number[] = [];
  const client = create({
    onError: (error) => errors.push(error),
    // Recorded, not slept: the delays are checked, and the test takes no time waiting.
    wait: (ms) => {
      delays.push(ms);
      return Promise.resolve();
    },
    ...options,
  });
  await use(client);
  await client.close();
  return { counts: { ...client.counts }, errors, delays };
}

/** Events of one run, told apart by `run` (node or browser) and `i`. */
const events = (tag: string, n: number, from = 0) => Array.from({ length: n }, (_, i) => ({ type: 'scenario', tag, i: from + i }));

export const scenarios = {
  /** 25 events in batches of at most 10, sent by flush(): three requests, every event sent. */
  batches: (create: Create, endpoint: string, tag: string) =>
    run(create, { endpoint, maxBatchEvents: 10, flushIntervalMs: 60_000 }, async (client) => {
      for (const event of events(tag, 25)) client.track(event);
      await client.flush();
    }),

  /**
   * Batches cut by bytes: 20 events of about 100 bytes under maxBatchBytes 512, so each request
   * is a valid body of at most 512 bytes (the server checks it parses; the test checks the sizes).
   */
  bytes: (create: Create, endpoint: string, tag: string) =>
    run(create, { endpoint, maxBatchBytes: 512, flushIntervalMs: 60_000 }, async (client) => {
      for (const event of events(tag, 20)) client.track({ ...event, pad: 'x'.repeat(60) });
      await client.flush();
    }),

  /** One batch refused, then failing, then cut off, then stored; a second batch stored at once. */
  retries: (create: Create, endpoint: string, tag: string) =>
    run(create, { endpoint, maxBatchEvents: 3, flushIntervalMs: 60_000, retryBaseMs: 100, retryMaxMs: 150, random: () => 0.5 }, async (client) => {
      for (const event of events(tag, 5)) client.track(event);
      await client.flush();
    }),

  /** Attempts run out: given up, counted and surfaced. */
  exhausted: (create: Create, endpoint: string, tag: string) =>
    run(create, { endpoint, maxAttempts: 3, retryBaseMs: 1000, retryMaxMs: 3000, random: () => 0.999 }, async (client) => {
      for (const event of events(tag, 2)) client.track(event);
      await client.flush();
    }),

  /**
   * An event over maxBatchBytes is refused before it is queued; one the server refuses (too deep
   * for its MAX_EVENT_DEPTH) is surfaced with the server's code and not retried; what is not an
   * object is refused; the rest are sent.
   */
  refused: (create: Create, endpoint: string, tag: string) =>
    run(create, { endpoint, maxBatchBytes: 1000, flushIntervalMs: 60_000 }, async (client) => {
      client.track({ tag, big: 'x'.repeat(1000) });
      client.track([1, 2] as unknown as Record<string, unknown>);
      await client.flush();
      client.track({ tag, deep: [[[[[[[[[[1]]]]]]]]]] });
      await client.flush();
      for (const event of events(tag, 2)) client.track(event);
      await client.flush();
    }),

  /** A full queue drops its oldest (or the newest), counted, and sends the rest. */
  queue: async (create: Create, endpoint: string, tag: string) => {
    const oldest = await run(create, { endpoint, maxQueueEvents: 3, flushIntervalMs: 60_000 }, (client) => {
      for (const event of events(`${tag}-oldest`, 5)) client.track(event);
    });
    const newest = await run(create, { endpoint, maxQueueEvents: 3, dropWhenFull: 'newest', flushIntervalMs: 60_000 }, (client) => {
      for (const event of events(`${tag}-newest`, 5)) client.track(event);
    });
    return { oldest, newest };
  },
};

export type ScenarioName = keyof typeof scenarios;
