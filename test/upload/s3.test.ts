// S3Uploader under a real shortage of file descriptors: a process at its `ulimit -n` gets EMFILE
// when it opens the PUT's socket; the upload must retry (with backoff) and land, not fail for good.
import t from 'tap';
import { ERROR_CODES } from '../../src/metrics/s3-codes.js';
import { errorCode, isRetryable } from '../../src/upload/errors.js';
import { startS3 } from '../helpers/s3.js';
import { runUnderFdLimit } from '../helpers/fd-limit.js';
import { ROOT } from '../helpers/server.js';

// Warms the client up, takes every free descriptor, starts a PUT (its socket gets EMFILE), frees
// the descriptors 300 ms later, and reports how the PUT ended.
const CHILD = `
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { gzipSync } from 'node:zlib';
import { createS3Client, S3Uploader } from '${ROOT}dist/upload/s3.js';
import { createUploadMetrics } from '${ROOT}dist/metrics/upload.js';
const client = createS3Client({ endpoint: process.env.S3_ENDPOINT, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
const registry = new Registry();
const uploader = new S3Uploader(client, { bucket: 'test-bucket', maxAttempts: 5, timeoutMs: 5000 }, createUploadMetrics(registry), pino({ level: 'silent' }));
const body = gzipSync('{"received_at":1,"event":{}}\\n');
await uploader.put({ key: 'raw/warm-up.jsonl.gz', body, events: 1 });
client.destroy(); // no idle keep-alive socket to reuse: the next PUT must open one
setTimeout(exhaustFds(), 300);
let result = 'stored';
await uploader.put({ key: 'raw/under-emfile.jsonl.gz', body, events: 1 }).catch((err) => { result = 'failed: ' + (err.code ?? err.name) + ' ' + err.message; });
const errors = (await registry.getSingleMetric('s3_put_errors_total').get()).values.map((v) => v.labels.code + '=' + v.value);
console.log(JSON.stringify({ result, errors }));
`;

t.test('EMFILE on the PUT socket (a real one, under ulimit -n) is retried and the object lands', async (t) => {
  const s3 = await startS3(t);
  const { result, errors } = await runUnderFdLimit<{ result: string; errors: string[] }>(64, CHILD, { S3_ENDPOINT: s3.endpoint });
  t.equal(result, 'stored', 'on main: failed for good on the first EMFILE, labelled Other');
  t.ok(errors.some((e) => /^EMFILE=[1-9]\d*$/.test(e)), `the failed attempts are counted as EMFILE: ${errors.join(', ')}`);
  t.same((await s3.objects()).map((o) => o.key).sort(), ['raw/under-emfile.jsonl.gz', 'raw/warm-up.jsonl.gz']);
});

t.test('the classifier: EMFILE and ENFILE are transient, with their own bounded label', async (t) => {
  for (const code of ['EMFILE', 'ENFILE']) {
    const error = Object.assign(new Error(`connect ${code} 127.0.0.1:9000 - Local (undefined:undefined)`), { code, syscall: 'connect' });
    t.equal(isRetryable(error), true, code);
    t.equal(errorCode(error), code);
  }
});

t.test('every label errorCode() gives is one of ERROR_CODES, which s3_put_errors_total exports at 0 from the start', async (t) => {
  const samples = [
    Object.assign(new Error('x'), { name: 'AccessDenied' }),
    Object.assign(new Error('x'), { name: 'Weird', $metadata: { httpStatusCode: 502 } }),
    Object.assign(new Error('x'), { name: 'Weird', $metadata: { httpStatusCode: 409 } }),
    Object.assign(new Error('x'), { name: 'Weird', $metadata: { httpStatusCode: 301 } }),
    Object.assign(new Error('x'), { code: 'ECONNREFUSED' }),
    Object.assign(new Error('x'), { code: 'EMFILE' }),
    new Error('anything else'),
  ];
  for (const error of samples) t.ok(ERROR_CODES.includes(errorCode(error)), errorCode(error));
  t.equal(new Set(ERROR_CODES).size, ERROR_CODES.length, 'no label twice');
});
