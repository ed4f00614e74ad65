// Which S3 failures are retried and the bounded label each gets, for errors the AWS SDK really
// raises: S3's own refusals from a real S3-compatible server, S3's 5xx and throttling answered on
// the wire by the fault proxy (s3rver cannot be made to send them), a refused connection, and the
// uploader's own timeout and abort.
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import t, { type Test } from 'tap';
import { ERROR_CODES } from '../../src/metrics/s3-codes.js';
import { AttemptTimeout, errorCode, isRetryable, UploadAborted } from '../../src/upload/errors.js';
import { type Fault, refusedPort, startFaultProxy } from '../helpers/fault-proxy.js';
import { BUCKET, startS3 } from '../helpers/s3.js';

/** The error a single PutObject to `endpoint` rejects with. */
async function putError(t: Test, endpoint: string, { bucket = BUCKET, accessKeyId = 'S3RVER' } = {}): Promise<unknown> {
  const client = new S3Client({ endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId, secretAccessKey: 'S3RVER' }, maxAttempts: 1 });
  t.teardown(() => client.destroy());
  try {
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'raw/x.jsonl.gz', Body: 'x' }));
  } catch (err) {
    return err;
  }
  throw new Error('the PUT succeeded');
}

t.test('S3\'s refusals (a real S3-compatible server): not retried, labelled with their code', async (t) => {
  const s3 = await startS3(t);
  const noBucket = await putError(t, s3.endpoint, { bucket: 'no-such-bucket' });
  t.equal(errorCode(noBucket), 'NoSuchBucket');
  t.equal(isRetryable(noBucket), false);
  const badKey = await putError(t, s3.endpoint, { accessKeyId: 'NOT-A-KEY' });
  t.equal(errorCode(badKey), 'InvalidAccessKeyId');
  t.equal(isRetryable(badKey), false);
});

t.test('answers on the wire: 5xx and throttling retried, 4xx not; codes outside the known set folded by status', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const cases: [Fault & { status: number; code: string }, string, boolean][] = [
    [{ status: 503, code: 'SlowDown' }, 'SlowDown', true],
    [{ status: 500, code: 'InternalError' }, 'InternalError', true],
    [{ status: 503, code: 'ServiceUnavailable' }, 'ServiceUnavailable', true],
    [{ status: 502, code: 'BadGatewayOfSorts' }, 'Other5xx', true],
    [{ status: 403, code: 'AccessDenied' }, 'AccessDenied', false],
    [{ status: 403, code: 'ExpiredToken' }, 'ExpiredToken', false],
    [{ status: 409, code: 'SomethingNew' }, 'Other4xx', false],
  ];
  for (const [fault, code, retried] of cases) {
    proxy.decide = () => fault;
    const error = await putError(t, proxy.endpoint);
    t.equal(errorCode(error), code, `${fault.status} ${fault.code}: ${code}`);
    t.equal(isRetryable(error), retried, `${fault.status} ${fault.code}: ${retried ? '' : 'not '}retried`);
  }
});

t.test('a refused connection is retried, labelled with its errno code', async (t) => {
  const error = await putError(t, `http://127.0.0.1:${await refusedPort()}`);
  t.equal(errorCode(error), 'ECONNREFUSED');
  t.equal(isRetryable(error), true);
});

t.test('the uploader\'s own: a timed-out attempt is retried (Timeout), an abort is not (Aborted)', async (t) => {
  t.equal(errorCode(new AttemptTimeout('no answer')), 'Timeout');
  t.equal(isRetryable(new AttemptTimeout('no answer')), true);
  t.equal(errorCode(new UploadAborted('deadline')), 'Aborted');
  t.equal(isRetryable(new UploadAborted('deadline')), false);
  t.equal(new AttemptTimeout('x').name, 'AttemptTimeout', 'named for the logs');
  t.equal(new UploadAborted('x').name, 'UploadAborted');
  // An abort wins over what the error would otherwise say: shutdown cut it, S3 did not refuse it.
  const abortedRefusal = Object.assign(new UploadAborted('deadline'), { $metadata: { httpStatusCode: 503 } });
  t.equal(errorCode(abortedRefusal), 'Aborted');
  t.equal(isRetryable(abortedRefusal), false);
});

t.test('what carries no S3 code, status or known errno is Other, never a label of its own', async (t) => {
  t.equal(errorCode(new Error('socket hang up')), 'Other');
  t.equal(errorCode(Object.assign(new Error('x'), { code: 'EWEIRD' })), 'Other', 'an unknown errno does not add a series');
  t.equal(errorCode(Object.assign(new Error('x'), { name: 'Made-Up' })), 'Other', 'nor an unknown name');
  t.equal(errorCode(Object.assign(new Error('x'), { $metadata: { httpStatusCode: 304 } })), 'OtherHttp');
  t.equal(isRetryable(new Error('socket hang up')), false);
  for (const code of ['Other', 'OtherHttp', 'Other4xx', 'Other5xx', 'Timeout', 'Aborted', 'ECONNREFUSED']) t.ok(ERROR_CODES.includes(code), `${code} is exported from the start`);
});
