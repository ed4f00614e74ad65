// Batch cuts seen from outside: objects in S3 cut by count, by bytes and by age, and flushed at
// shutdown. The server runs in the test's process: the cuts are its subject, not the process.
import t from 'tap';
import { startInProcess } from '../helpers/in-process.js';
import { startS3 } from '../helpers/s3.js';
import { eventually } from '../helpers/server.js';

const events = (from: number, n: number) => JSON.stringify(Array.from({ length: n }, (_, i) => ({ id: from + i })));

t.test('BATCH_MAX_EVENTS cuts; the shutdown flushes the rest', async (t) => {
  const s3 = await startS3(t);
  const server = await startInProcess(t, { ...s3.env, BATCH_MAX_EVENTS: '10', BATCH_MAX_AGE_MS: '3600000' });
  for (let i = 0; i < 5; i++) t.equal((await server.post(events(i * 5, 5))).status, 202);
  await eventually(async () => (await server.metric('s3_objects_stored_total')) === 2);
  t.same((await s3.objects()).map((o) => o.records.length), [10, 10], 'two full batches, the rest still open');
  const exit = await server.stop('SIGTERM');
  t.same(exit, { code: 0, signal: null });
  const objects = await s3.objects();
  t.same(objects.map((o) => o.records.length).sort(), [10, 10, 5]);
  t.same(objects.flatMap((o) => o.records.map((r) => r.event.id)).sort((a, b) => Number(a) - Number(b)), Array.from({ length: 25 }, (_, i) => i));
  const summary = await server.waitForLog((l) => l.msg === 'shutdown complete');
  t.match(summary, { level: 'info', uploadedInTime: true, acceptedEvents: 25, storedEvents: 25, spilledEvents: 0, droppedEvents: 0, unaccountedEvents: 0 });
});

t.test('BATCH_MAX_BYTES cuts', async (t) => {
  const s3 = await startS3(t);
  const server = await startInProcess(t, { ...s3.env, BATCH_MAX_BYTES: '2048', BATCH_MAX_AGE_MS: '200' });
  const pad = 'x'.repeat(100);
  for (let i = 0; i < 10; i++) t.equal((await server.post(JSON.stringify(Array.from({ length: 5 }, (_, j) => ({ id: i * 5 + j, pad }))))).status, 202);
  await eventually(async () => (await server.metric('s3_events_stored_total')) === 50);
  const objects = await s3.objects();
  t.ok(objects.length >= 3, `${objects.length} objects for ~8 KiB of lines`);
  for (const object of objects) {
    const size = object.lines.reduce((n, l) => n + l.length + 1, 0);
    t.ok(size <= 2048, `object of ${size} bytes within BATCH_MAX_BYTES`);
  }
});

t.test('BATCH_MAX_AGE_MS cuts a batch that never fills', async (t) => {
  const s3 = await startS3(t);
  const server = await startInProcess(t, { ...s3.env, BATCH_MAX_AGE_MS: '100' });
  t.equal((await server.post('{"id":"lonely"}')).status, 202);
  await eventually(async () => (await server.metric('s3_objects_stored_total')) === 1);
  const [object] = await s3.objects();
  t.same(object!.records.map((r) => r.event), [{ id: 'lonely' }]);
});
