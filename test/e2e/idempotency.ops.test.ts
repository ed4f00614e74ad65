// test:ops (WORKERS=2 servers are slow to start): Idempotency-Key with the HTTP front on two worker
// threads, one table for the process. Real server processes, a real S3 server, ACK_LEVEL=disk and
// a real SIGKILL between the first request and its repeats. Each request on a connection of its
// own: connections go to the workers in turn, so the repeats reach both. And a SIGKILL after the
// key's WAL segment was removed: the key journal (src/wal/key-journal.ts) alone knows it then.
import { readdirSync } from 'node:fs';
import t from 'tap';
import { startS3 } from '../helpers/s3.js';
import { eventually, killed, startServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

const BODY = '[{"n":1},{"n":2}]';
const HEADERS = { 'content-type': 'application/json', 'idempotency-key': 'workers-1', connection: 'close' };

t.test('WORKERS=2: the same body under one key, on every worker and across a SIGKILL at ACK_LEVEL=disk, is stored once', async (t) => {
  const s3 = await startS3(t);
  const env = { ...s3.env, WORKERS: '2', ACK_LEVEL: 'disk', WAL_DIR: tempDir(t, 'wal'), DLQ_DIR: tempDir(t, 'dlq'), BATCH_MAX_AGE_MS: '50' };
  const first = await startServer(t, env);
  const answers = [];
  for (let i = 0; i < 4; i++) answers.push(await first.post(BODY, HEADERS));
  t.same(answers.map((a) => [a.status, a.headers.get('idempotent-replayed')]), [[202, null], [202, 'true'], [202, 'true'], [202, 'true']], 'one 202, then replays from both workers');
  t.equal((await first.post('[{"n":3}]', HEADERS)).status, 422, 'another body, on whichever worker');
  await eventually(async () => (await first.metric('s3_events_stored_total')) === 2);
  t.equal(await first.metric('idempotency_replays_total'), 3);
  await killed(t, first);
  const second = await startServer(t, env);
  for (let i = 0; i < 2; i++) {
    const again = await second.post(BODY, HEADERS);
    t.same([again.status, again.headers.get('idempotent-replayed'), again.json], [202, 'true', { accepted: 2 }], `after the restart, repeat ${i + 1}`);
  }
  const events = (await s3.objects()).flatMap((o) => o.records.map((r) => r.event));
  t.same(events, [{ n: 1 }, { n: 2 }], 'stored once');
  t.same(await second.stop(), { code: 0, signal: null });
});

t.test('ACK_LEVEL=disk: a SIGKILL after the key\'s WAL segment was removed; after the restart the key is known from the journal', async (t) => {
  const s3 = await startS3(t);
  const walDir = tempDir(t, 'wal');
  const env = { ...s3.env, ACK_LEVEL: 'disk', WAL_DIR: walDir, DLQ_DIR: tempDir(t, 'dlq'), BATCH_MAX_AGE_MS: '20', WAL_SEGMENT_BYTES: String(64 * 1024) };
  const headers = { 'content-type': 'application/json', 'idempotency-key': 'journal-1' };
  const plain = { 'content-type': 'application/json' };
  const first = await startServer(t, env);
  t.same((await first.post(BODY, headers)).json, { accepted: 2 });
  // 70 KiB more fills segment 0; once its events are stored, the next write removes it.
  t.equal((await first.post(JSON.stringify([{ pad: 'x'.repeat(70 * 1024) }]), plain)).status, 202);
  await eventually(async () => (await first.metric('s3_events_stored_total')) === 3);
  await eventually(async () => (await first.post('[{"n":3}]', plain), !readdirSync(walDir).includes('000000000000.wal')));
  await killed(t, first);
  const second = await startServer(t, env);
  const again = await second.post(BODY, headers);
  t.same([again.status, again.headers.get('idempotent-replayed'), again.json], [202, 'true', { accepted: 2 }], 'the first answer');
  t.same(await second.stop(), { code: 0, signal: null });
  const events = (await s3.objects()).flatMap((o) => o.records.map((r) => r.event)).filter((e) => e.n === 1 || e.n === 2);
  t.same(events, [{ n: 1 }, { n: 2 }], 'stored once');
});
