// startServer in this process, on port 0, against a real S3-compatible server: the parts built from
// the config, the start-up lines, /metrics on a port of its own, the preflight's result, events to
// S3, and the shutdown it returns closing every part (the listeners, the WAL, the DLQ's lock).
// What an operator must fix is a StartError (its fatal line already written, or not, as `logged`
// says). The process around it (signals, exit codes, stderr) is main.ts's: test/main.test.ts.
import { existsSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { loadConfig } from '../src/config.js';
import { acquireLock } from '../src/dlq/lock.js';
import { type Server, StartError, startServer } from '../src/server.js';
import { VERSION } from '../src/version.js';
import { encodeEvents, SEGMENT_HEADER_BYTES, segmentHeader, segmentName } from '../src/wal/format.js';
import { startS3 } from './helpers/s3.js';
import { client, type LogLine, logBook, metricValue, TEST_DEFAULTS } from './helpers/server.js';
import { tempDir } from './helpers/temp.js';

// The AWS SDK reads the region and credentials from the process's environment.
Object.assign(process.env, { AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' });

const machine = { cores: () => 1, hostname: () => 'unit-host' };

async function start(t: Test, env: Record<string, string>) {
  const dir = tempDir(t, 'server');
  const config = loadConfig({ ...TEST_DEFAULTS, DLQ_DIR: join(dir, 'dlq'), WAL_DIR: join(dir, 'wal'), ...env }, machine);
  const book = logBook(new Promise(() => {}));
  const log = pino({ level: 'info', formatters: { level: (label) => ({ level: label }) } }, { write: (text: string) => book.add(JSON.parse(text) as LogLine) });
  let crashes = 0;
  const server = startServer(config, log, () => crashes++);
  return { config, book, server, crashes: () => crashes };
}

/** Shuts the server down at the end of the test (a begin after the end changes nothing). */
function owned(t: Test, server: Server): Server {
  t.teardown(async () => {
    server.shutdown.begin('SIGTERM', 0);
    await server.shutdown.ended;
  });
  return server;
}

/** How a new connection to `port` ends: an error code, or 'connected'. */
function connectError(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), resolve('connected')));
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

t.test('serves, with /metrics on its own port, and its shutdown closes every part', async (t) => {
  const s3 = await startS3(t);
  const { config, book, server: starting } = await start(t, { ...s3.env, METRICS_PORT: '0', ACK_LEVEL: 'disk', BATCH_MAX_AGE_MS: '600000' });
  const server = owned(t, await starting);
  t.ok(server.port > 0 && server.metricsPort > 0 && server.port !== server.metricsPort, 'two ports of their own');
  t.equal(server.endThreads, undefined, 'WORKERS=1: no threads to end');
  const messages = book.logs.map((l) => l.msg);
  t.match(book.logs[0], { msg: 'event-ingest starting', version: VERSION });
  t.ok(messages.includes('HTTP engine: native uWebSockets.js') && messages.includes('HTTP front: threads (WORKERS)'));
  const metricsUrl = `http://127.0.0.1:${server.metricsPort}/metrics`;
  t.match(book.logs.find((l) => l.msg === 'listening'), { address: `127.0.0.1:${server.port}`, port: server.port, metricsPort: server.metricsPort, metrics: metricsUrl, bucket: 'test-bucket', prefix: 'raw', version: VERSION });
  await book.waitForLog((l) => l.msg.startsWith('S3 preflight ok'));
  const ingest = client(`http://127.0.0.1:${server.port}`, metricsUrl);
  const metrics = client(`http://127.0.0.1:${server.metricsPort}`, metricsUrl);
  t.equal((await ingest.post('[{"a":1},{"a":2}]')).status, 202);
  t.equal(await metrics.metric('s3_preflight_ok'), 1);
  t.equal(await metrics.metric('ingest_build_info', `{version="${VERSION}",node="${process.version}"}`), 1);
  t.equal(await metrics.metric('wal_max_bytes'), config.wal.maxBytes, 'ACK_LEVEL=disk: the WAL\'s gauges');
  t.equal((await s3.objects()).length, 0, 'held until the shutdown (no age cut within the test)');
  t.equal((await fetch(`http://127.0.0.1:${server.port}/metrics`)).status, 404, 'not on the ingest port');
  t.ok(existsSync(join(config.dlqDir, '.lock')) && existsSync(join(config.wal.dir, '.lock')), 'the DLQ and WAL directories are held');

  server.shutdown.begin('SIGTERM', 0);
  const { summary, code } = await server.shutdown.ended;
  t.equal(code, 0);
  t.match(summary, { accepted: 2, stored: 2, unaccounted: 0 });
  t.strictSame((await s3.objects()).flatMap((o) => o.records.map((r) => r.event)), [{ a: 1 }, { a: 2 }]);
  t.equal(book.logs.at(-1)!.msg, 'shutdown complete');
  t.notOk(existsSync(join(config.dlqDir, '.lock')) || existsSync(join(config.wal.dir, '.lock')), 'both released');
  t.equal(await connectError(server.port), 'ECONNREFUSED', 'the ingest port is closed');
  t.equal(await connectError(server.metricsPort), 'ECONNREFUSED', 'and the metrics port');
});

t.test('METRICS_PORT=ingest: /metrics on the ingest port, by choice, as the listening line says', async (t) => {
  const s3 = await startS3(t);
  const { book, server: starting } = await start(t, { ...s3.env, METRICS_PORT: 'ingest' });
  const server = owned(t, await starting);
  t.equal(server.metricsPort, server.port, 'no port of its own');
  const metricsUrl = `http://127.0.0.1:${server.port}/metrics`;
  t.match(book.logs.find((l) => l.msg === 'listening'), { metricsPort: server.port, metrics: metricsUrl });
  t.equal(metricValue(await (await fetch(metricsUrl)).text(), 'ingest_build_info', `{version="${VERSION}",node="${process.version}"}`), 1);
});

t.test('the /metrics page is rendered at most once per METRICS_RENDER_INTERVAL_MS: scrapes within it get the same page', async (t) => {
  const s3 = await startS3(t);
  // An interval no test outlasts, so that the two scrapes fall within it however slow the machine.
  const { server: starting } = await start(t, { ...s3.env, METRICS_RENDER_INTERVAL_MS: '60000' });
  const server = owned(t, await starting);
  const ingest = client(`http://127.0.0.1:${server.port}`, `http://127.0.0.1:${server.metricsPort}/metrics`);
  const before = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
  t.equal((await ingest.post('{"n":1}')).status, 202);
  const after = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
  t.equal(after, before, 'the same page: not rendered again');
  t.equal(metricValue(after, 'ingest_events_accepted_total'), 0, 'so the event accepted since is not in it yet');
  t.equal(await ingest.metric('ingest_events_accepted_total'), 0, 'nor for another scraper');
});

t.test('the shutdown stops intake at once: a POST after begin() is refused, not lost', async (t) => {
  const s3 = await startS3(t);
  const { server: starting } = await start(t, { ...s3.env, SHUTDOWN_TIMEOUT_MS: '2000' });
  const server = owned(t, await starting);
  const ingest = client(`http://127.0.0.1:${server.port}`, `http://127.0.0.1:${server.metricsPort}/metrics`);
  t.equal((await ingest.post('{"n":1}')).status, 202);
  server.shutdown.begin('SIGTERM', 0);
  // The listener stays open until the pipeline has closed, so that late clients hear why.
  t.match(await ingest.post('{"n":2}'), { status: 503, json: { error: 'shutting_down' } });
  const { summary } = await server.shutdown.ended;
  t.match(summary, { accepted: 1, stored: 1 }, 'only the event before the shutdown was accepted');
});

t.test('a DLQ directory held by another process: StartError, its fatal line already written (logged)', async (t) => {
  const s3 = await startS3(t);
  const dlq = tempDir(t, 'dlq');
  const held = await acquireLock(dlq, 'other');
  t.teardown(() => held.release());
  const { book, server } = await start(t, { ...s3.env, DLQ_DIR: dlq });
  const err = await server.then(() => undefined, (e: unknown) => e);
  t.type(err, StartError);
  t.equal((err as StartError).logged, true);
  t.match((err as Error).message, /^DLQ_DIR .* is in use by /);
  t.equal(book.logs.filter((l) => l.level === 'fatal').length, 1, 'the one fatal line, naming the holder');
});

t.test('a WAL directory held by another process: StartError naming WAL_DIR, for main to log', async (t) => {
  const s3 = await startS3(t);
  const wal = tempDir(t, 'wal');
  const held = await acquireLock(wal, 'other');
  t.teardown(() => held.release());
  const { server } = await start(t, { ...s3.env, ACK_LEVEL: 'disk', WAL_DIR: wal });
  const err = await server.then(() => undefined, (e: unknown) => e);
  t.type(err, StartError);
  t.equal((err as StartError).logged, false);
  t.match((err as Error).message, /^WAL_DIR .* is in use by .*one process per WAL directory/);
});

t.test('WAL_DIR/corrupt a symlink when a damaged segment must be copied there: StartError naming it; the WAL untouched', async (t) => {
  const s3 = await startS3(t);
  const wal = tempDir(t, 'wal');
  const elsewhere = tempDir(t, 'elsewhere');
  const records = () => encodeEvents(1_800_000_000_123, [1, 8], Buffer.from('[{"a":1}]'));
  const segment = Buffer.concat([segmentHeader('0badcafe'), ...records(), ...records()]);
  const damaged = Buffer.from(segment);
  damaged[SEGMENT_HEADER_BYTES + 4]! ^= 0x40;
  writeFileSync(join(wal, segmentName(0)), damaged);
  writeFileSync(join(wal, segmentName(1)), segment);
  symlinkSync(elsewhere, join(wal, 'corrupt'));
  const { server } = await start(t, { ...s3.env, ACK_LEVEL: 'disk', WAL_DIR: wal });
  const err = await server.then(() => undefined, (e: unknown) => e);
  t.type(err, StartError);
  t.equal((err as Error).message, `${join(wal, 'corrupt')} is a symbolic link`);
  t.same(readdirSync(elsewhere), []);
  t.same(readFileSync(join(wal, segmentName(0))), damaged);
});

t.test('a port in use: StartError naming the address', async (t) => {
  const s3 = await startS3(t);
  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise((resolve) => taken.close(resolve)));
  const port = (taken.address() as net.AddressInfo).port;
  const { server } = await start(t, { ...s3.env, PORT: String(port) });
  await t.rejects(server, new StartError(`cannot listen on 127.0.0.1:${port}: the port is in use`));
});

t.test('the error name, for logs and main', async (t) => {
  t.equal(new StartError('x').name, 'StartError');
  t.equal(new StartError('x').logged, false);
});
