// S3_SSE, S3_SSE_KMS_KEY_ID and S3_STORAGE_CLASS reach S3 on every PUT: live uploads, re-uploads
// from the DLQ and `dlq drain`, read from the request headers the fault proxy saw.
import type { IncomingHttpHeaders } from 'node:http';
import t from 'tap';
import { dlqCommand, T0, writeDlqFile } from '../helpers/dlq.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { startInProcess } from '../helpers/in-process.js';
import { s3Env, startS3 } from '../helpers/s3.js';
import { eventually } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

const KMS = { S3_SSE: 'aws:kms', S3_SSE_KMS_KEY_ID: 'arn:aws:kms:us-east-1:111122223333:key/test', S3_STORAGE_CLASS: 'STANDARD_IA' };

const settings = (h: IncomingHttpHeaders) => ({
  sse: h['x-amz-server-side-encryption'],
  kmsKey: h['x-amz-server-side-encryption-aws-kms-key-id'],
  storageClass: h['x-amz-storage-class'],
});

t.test('aws:kms with a key and a storage class: sent on the live PUT and on the re-upload of a spilled batch', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  // The first PUT fails for good (one attempt), so the batch is spilled and re-uploaded.
  proxy.decide = ({ attempt }) => (attempt === 1 ? { status: 500, code: 'InternalError' } : 'pass');
  const server = await startInProcess(t, { ...s3Env(proxy.endpoint), ...KMS, BATCH_MAX_AGE_MS: '50', UPLOAD_MAX_ATTEMPTS: '1', DLQ_REUPLOAD_IDLE_MS: '100' });
  t.equal((await server.post('{"id":1}')).status, 202);
  await eventually(async () => (await server.metric('dlq_events_reuploaded_total')) === 1);
  const puts = proxy.puts.filter((p) => p.key.startsWith('raw/'));
  t.equal(puts.length, 2, 'the live PUT and the re-upload');
  for (const put of puts) t.same(settings(put.headers), { sse: 'aws:kms', kmsKey: KMS.S3_SSE_KMS_KEY_ID, storageClass: 'STANDARD_IA' });
  t.equal((await s3.objects()).length, 1);
  t.notOk(server.logs.some((l) => l.msg.startsWith('S3_STORAGE_CLASS is one')), 'STANDARD_IA: readable, no warning');
});

t.test('GLACIER or DEEP_ARCHIVE: a warning at start-up that the objects will not be queryable', async (t) => {
  const s3 = await startS3(t);
  for (const storageClass of ['GLACIER', 'DEEP_ARCHIVE']) {
    const server = await startInProcess(t, { ...s3.env, S3_STORAGE_CLASS: storageClass });
    const line = await server.waitForLog((l) => l.msg.startsWith('S3_STORAGE_CLASS is one'));
    t.match(line, { level: 'warn', storageClass, msg: /Athena and other readers cannot read without a restore/ });
    await server.stop();
  }
});

t.test('AES256 alone: that header, no key id, no storage class', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const server = await startInProcess(t, { ...s3Env(proxy.endpoint), S3_SSE: 'AES256', BATCH_MAX_AGE_MS: '50' });
  t.equal((await server.post('{"id":1}')).status, 202);
  await eventually(async () => (await server.metric('s3_events_stored_total')) === 1);
  const put = proxy.puts.find((p) => p.key.startsWith('raw/'))!;
  t.same(settings(put.headers), { sse: 'AES256', kmsKey: undefined, storageClass: undefined });
});

t.test('unset: no encryption or storage class header (the bucket default applies)', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const server = await startInProcess(t, { ...s3Env(proxy.endpoint), BATCH_MAX_AGE_MS: '50' });
  t.equal((await server.post('{"id":1}')).status, 202);
  await eventually(async () => (await server.metric('s3_events_stored_total')) === 1);
  const put = proxy.puts.find((p) => p.key.startsWith('raw/'))!;
  t.same(settings(put.headers), { sse: undefined, kmsKey: undefined, storageClass: undefined });
});

t.test('dlq drain sends them too', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const dir = tempDir(t, 'dlq');
  writeDlqFile(dir, `${T0}-a`, [1, 2]); // a batch id: the command uploads only keys this server makes
  const drained = await dlqCommand(['drain'], { ...s3Env(proxy.endpoint), ...KMS, DLQ_DIR: dir });
  t.equal(drained.code, 0, drained.stderr);
  t.equal(proxy.puts.length, 1);
  t.same(settings(proxy.puts[0]!.headers), { sse: 'aws:kms', kmsKey: KMS.S3_SSE_KMS_KEY_ID, storageClass: 'STANDARD_IA' });
});
