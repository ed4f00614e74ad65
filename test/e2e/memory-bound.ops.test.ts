// docs/tuning.md's RSS bound holds under the worst body shapes: padded bodies, 1-byte chunks, slow
// drip clients, bodies of a third of a million empty arrays and many connections, with S3
// stalled so that everything held stays held.
import net from 'node:net';
import { gzipSync } from 'node:zlib';
import t from 'tap';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { peakRss, postHead, rawRequest } from '../helpers/raw.js';
import { startS3 } from '../helpers/s3.js';
import { startServer } from '../helpers/server.js';

const MiB = 1024 * 1024;
const SETTINGS = {
  CHANNEL_MAX_BYTES: 4 * MiB,
  MAX_BODY_BYTES: MiB,
  MAX_BODIES_IN_FLIGHT_BYTES: 8 * MiB,
  BATCH_MAX_BYTES: MiB,
  UPLOAD_QUEUE_MAX_BATCHES: 2,
  UPLOAD_CONCURRENCY: 1,
};
/** docs/tuning.md, "Memory". */
const BOUND =
  240 * MiB +
  SETTINGS.CHANNEL_MAX_BYTES +
  (2 + SETTINGS.UPLOAD_QUEUE_MAX_BATCHES + 2 * SETTINGS.UPLOAD_CONCURRENCY) * SETTINGS.BATCH_MAX_BYTES +
  2 * SETTINGS.MAX_BODY_BYTES +
  SETTINGS.MAX_BODIES_IN_FLIGHT_BYTES;

/** Runs `jobs` with at most `width` at a time. */
async function pool<T>(jobs: (() => Promise<T>)[], width: number): Promise<T[]> {
  const results: T[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < jobs.length) results.push(await jobs[next++]!());
  }));
  return results;
}

t.test('peak RSS stays under the documented bound, whatever the bodies look like', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  proxy.decide = () => 'stall';
  t.teardown(() => proxy.release());
  const env = Object.fromEntries(Object.entries(SETTINGS).map(([k, v]) => [k, String(v)]));
  const server = await startServer(t, { ...s3.env, S3_ENDPOINT: proxy.endpoint, ...env });
  const statuses = new Map<string, number>();
  const count = (what: string, status: number): void => {
    statuses.set(`${what} ${status}`, (statuses.get(`${what} ${status}`) ?? 0) + 1);
  };

  // 1. `{}` padded with whitespace to just under 1 MiB: each holds 2 bytes, not a megabyte.
  const padded = `{}${' '.repeat(MiB - 100)}`;
  await pool(Array.from({ length: 300 }, () => async () => count('padded', (await server.post(padded)).status)), 8);
  const paddedGzip = gzipSync(`{"a":1}${' '.repeat(MiB - 100)}`);
  await pool(Array.from({ length: 50 }, () => async () => count('padded gzip', (await server.post(paddedGzip, { 'content-type': 'application/json', 'content-encoding': 'gzip' })).status)), 8);
  const channelBytes = await server.metric('channel_bytes');
  t.ok(channelBytes <= 350 * 7, `the channel holds ${channelBytes} bytes after 350 padded requests: their events only`);

  // 2. Chunked bodies of 1-byte chunks, about 200 KB each (1.2 MB on the wire).
  const array = Buffer.from(`[${Array.from({ length: 1000 }, (_, i) => `{"i":${i},"pad":"${'x'.repeat(180)}"}`).join(',')}]`);
  const chunked = Buffer.concat([Buffer.from(postHead('transfer-encoding: chunked\r\n')), ...Array.from(array, (byte) => Buffer.from(`1\r\n${String.fromCharCode(byte)}\r\n`)), Buffer.from('0\r\n\r\n')]);
  await pool(Array.from({ length: 8 }, () => async () => count('1-byte chunks', (await rawRequest(server.port, chunked, 20_000)).status)), 4);

  // 3. Slow drip: 30 clients each declare 1 MB and send 100 bytes every 200 ms for 3 s.
  const drips = Array.from({ length: 30 }, () => {
    const socket = net.connect(server.port, '127.0.0.1');
    let answer = '';
    socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    socket.on('error', () => {});
    socket.write(`${postHead('content-length: 1000000\r\n')}[${' '.repeat(99)}`);
    const timer = setInterval(() => socket.writable && socket.write(' '.repeat(100)), 200);
    return { socket, timer, answer: () => answer };
  });
  await new Promise((r) => setTimeout(r, 3000));
  for (const drip of drips) {
    clearInterval(drip.timer);
    drip.socket.destroy();
    count('slow drip', Number(/^HTTP\/1\.1 (\d+)/.exec(drip.answer())?.[1] ?? 0));
  }

  // 4. Bodies that JSON.parse would turn into hundreds of MB of objects: a megabyte of empty
  // arrays inside one event (valid: accepted while there is room), and as the body's array
  // (refused: not objects). Validation builds nothing, so they cost what their bytes cost.
  const emptyArrays = '[],'.repeat((MiB - 100) / 3);
  const inOneEvent = `{"a":[${emptyArrays}[]]}`;
  const asTheArray = `[${emptyArrays}[]]`;
  await pool(Array.from({ length: 12 }, () => async () => count('empty arrays in an event', (await server.post(inOneEvent)).status)), 4);
  await pool(Array.from({ length: 12 }, () => async () => count('an array of empty arrays', (await server.post(asTheArray)).status)), 4);

  // 5. Many connections at once, idle.
  const idle = Array.from({ length: 2000 }, () => net.connect(server.port, '127.0.0.1').on('error', () => {}));
  await new Promise((r) => setTimeout(r, 2000));
  idle.forEach((s) => s.destroy());

  t.comment(JSON.stringify(Object.fromEntries(statuses)));
  t.equal(statuses.get('padded 202'), 300, 'every padded request accepted: its padding takes no room');
  t.equal(statuses.get('1-byte chunks 202'), 8);
  t.equal(statuses.get('an array of empty arrays 400'), 12);
  t.equal((statuses.get('empty arrays in an event 202') ?? 0) + (statuses.get('empty arrays in an event 503') ?? 0), 12, 'accepted, or refused for room');
  // A drip holds what it has sent (a first buffer), not the megabyte it declared: none is refused.
  t.equal(statuses.get('slow drip 0'), 30, 'slow drips wait, holding what they sent');
  const peak = peakRss(server.child.pid!);
  t.ok(peak < BOUND, `peak RSS ${Math.round(peak / MiB)} MiB < ${Math.round(BOUND / MiB)} MiB, the documented bound for these settings`);
  t.equal((await fetch(`${server.url}/healthz`)).status, 200, 'still serving');
});
