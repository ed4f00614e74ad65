// Local mode's embedded S3 (s3rver): on loopback, on a free port, with the bucket `events` ready,
// taking the fixed credentials, keeping its objects under the directory given, and closed by
// close(). Without s3rver installed (a production install) it refuses with LocalModeUnavailable.
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { promisify } from 'node:util';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import t from 'tap';
import { LOCAL_BUCKET, LOCAL_CREDENTIALS, startLocalS3 } from '../src/local-s3.js';
import { ROOT } from './helpers/server.js';
import { tempDir } from './helpers/temp.js';

t.test('serves the events bucket on loopback with the fixed credentials, stores under the directory, and closes', async (t) => {
  const dir = tempDir(t, 'local-s3');
  const local = await startLocalS3(dir);
  let closed = false;
  t.teardown(() => (closed ? undefined : local.close()));
  t.match(local.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
  t.not(local.endpoint, 'http://127.0.0.1:0', 'a real port, not 0');
  const client = new S3Client({ endpoint: local.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: LOCAL_CREDENTIALS, maxAttempts: 1 });
  t.teardown(() => client.destroy());
  await client.send(new PutObjectCommand({ Bucket: LOCAL_BUCKET, Key: 'raw/a.txt', Body: 'hello' }));
  const got = await client.send(new GetObjectCommand({ Bucket: LOCAL_BUCKET, Key: 'raw/a.txt' }));
  t.equal(await got.Body!.transformToString(), 'hello');
  t.ok(readdirSync(dir, { recursive: true }).some((name) => String(name).startsWith(LOCAL_BUCKET)), 'kept under the directory given');
  const wrong = new S3Client({ endpoint: local.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'OTHER', secretAccessKey: 'S3RVER' }, maxAttempts: 1 });
  t.teardown(() => wrong.destroy());
  await t.rejects(wrong.send(new PutObjectCommand({ Bucket: LOCAL_BUCKET, Key: 'raw/b.txt', Body: 'x' })), { name: 'InvalidAccessKeyId' }, 'another access key is refused (s3rver checks the key id, not v4 signatures)');
  await local.close();
  closed = true;
  await t.rejects(client.send(new GetObjectCommand({ Bucket: LOCAL_BUCKET, Key: 'raw/a.txt' })), { code: 'ECONNREFUSED' }, 'closed: nothing listens');
});

// s3rver cannot be uninstalled for a test: a child process whose resolver refuses it stands in for
// a production install (npm ci --omit=dev).
const WITHOUT_S3RVER = `data:text/javascript,${encodeURIComponent(`
import { register } from 'node:module';
register('data:text/javascript,' + encodeURIComponent(\`
export async function resolve(specifier, context, next) {
  if (specifier === 's3rver') throw Object.assign(new Error('Cannot find package s3rver'), { code: 'ERR_MODULE_NOT_FOUND' });
  return next(specifier, context);
}\`));`)}`;

const CHILD = `
import { LocalModeUnavailable, startLocalS3 } from '${ROOT}src/local-s3.ts';
try {
  await startLocalS3('/nonexistent');
  console.log('started');
} catch (err) {
  console.log(JSON.stringify({ unavailable: err instanceof LocalModeUnavailable, message: err.message }));
}
`;

t.test('without s3rver installed: LocalModeUnavailable, telling the user to set S3_BUCKET', async (t) => {
  const { stdout } = await promisify(execFile)(process.execPath, [`--import=${WITHOUT_S3RVER}`, '--input-type=module', '-e', CHILD], { timeout: 10_000 });
  const answer = JSON.parse(stdout) as { unavailable: boolean; message: string };
  t.equal(answer.unavailable, true);
  t.match(answer.message, /S3_BUCKET is not set, and local mode needs the dev dependency s3rver, which is not installed .*: set S3_BUCKET/);
});
