// Where batches go: with S3_BUCKET, that bucket through the SDK's own region and credentials from
// the environment (no region: NoRegion, naming AWS_REGION); without it, local mode's embedded S3
// under ./data/s3 of the working directory. uploaderFor gives an uploader with the configured
// bucket, object settings, attempts and timeout per attempt. A real S3-compatible server, with
// the fault proxy in front where an attempt must stall.
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import t, { type Test } from 'tap';
import { type Config, loadConfig } from '../../src/config.js';
import { LOCAL_BUCKET } from '../../src/local-s3.js';
import { createUploadMetrics } from '../../src/metrics/upload.js';
import { connectS3, LOCAL_DATA_DIR, NoRegion, type S3Target, uploaderFor } from '../../src/upload/connect.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { BUCKET, readObjects, startS3 } from '../helpers/s3.js';
import { tempDir } from '../helpers/temp.js';

const log = pino({ level: 'silent' });
const BODY = gzipSync('{"received_at":1,"event":{}}\n');
const machine = { cores: () => 1, hostname: () => 'unit' };
const config = (env: Record<string, string>): Config => loadConfig({ WORKERS: '1', ...env }, machine);

/** The SDK reads region and credentials from the process's environment: set for the test, restored after. */
function sdkEnv(t: Test, env: Record<string, string | undefined>): void {
  const saved = Object.fromEntries(Object.keys(env).map((name) => [name, process.env[name]]));
  const set = (values: Record<string, string | undefined>) => {
    for (const [name, value] of Object.entries(values)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  };
  set(env);
  t.teardown(() => set(saved));
}

/** No region anywhere the SDK looks: not in the environment, nor in a shared config file. */
function noRegion(t: Test, more: Record<string, string | undefined> = {}): void {
  const nowhere = join(tempDir(t, 'aws'), 'none');
  sdkEnv(t, { AWS_REGION: undefined, AWS_DEFAULT_REGION: undefined, AWS_PROFILE: undefined, AWS_CONFIG_FILE: nowhere, AWS_SHARED_CREDENTIALS_FILE: nowhere, ...more });
}

function connect(t: Test, c: Config): Promise<S3Target> {
  return connectS3(c).then((target) => {
    t.teardown(async () => (target.client.destroy(), await target.local?.close()));
    return target;
  });
}

t.test('a bucket and no region anywhere: NoRegion, telling the operator to set AWS_REGION', async (t) => {
  noRegion(t);
  await t.rejects(connectS3(config({ S3_BUCKET: 'events-prod' })), new NoRegion('no AWS region: set AWS_REGION (ECS sets it for tasks)'));
});

t.test('a bucket: that bucket at the configured endpoint, region and credentials from the environment; no local server', async (t) => {
  const s3 = await startS3(t);
  sdkEnv(t, { AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' });
  const c = config({ S3_BUCKET: BUCKET, S3_ENDPOINT: s3.endpoint, S3_FORCE_PATH_STYLE: 'true' });
  const target = await connect(t, c);
  t.equal(target.bucket, BUCKET);
  t.equal(target.local, undefined);
  t.equal(await target.client.config.region(), 'us-east-1');
  await uploaderFor(target, c, createUploadMetrics(new Registry()), log).put({ key: 'raw/a.jsonl.gz', body: BODY, events: 1 });
  t.strictSame((await s3.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'raw/a.jsonl.gz' }))).Metadata, { 'event-count': '1' });
});

t.test('uploaderFor: the configured object settings on every PUT, UPLOAD_TIMEOUT_MS per attempt, UPLOAD_MAX_ATTEMPTS attempts', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  // The first attempt is never answered: cut at the timeout, then retried. The timeout is 1 s, not
  // less: the second attempt must be answered within it too, on a loaded machine (100 ms flaked).
  proxy.decide = ({ attempt }) => (attempt === 1 ? 'stall' : 'pass');
  sdkEnv(t, { AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' });
  const c = config({ S3_BUCKET: BUCKET, S3_ENDPOINT: proxy.endpoint, S3_FORCE_PATH_STYLE: 'true', S3_STORAGE_CLASS: 'STANDARD_IA', S3_SSE: 'AES256', UPLOAD_TIMEOUT_MS: '1000', UPLOAD_MAX_ATTEMPTS: '2' });
  const target = await connect(t, c);
  const registry = new Registry();
  await uploaderFor(target, c, createUploadMetrics(registry), log).put({ key: 'raw/b.jsonl.gz', body: BODY, events: 1 });
  t.equal(proxy.puts.length, 2, 'two attempts');
  for (const put of proxy.puts) t.match(put.headers, { 'x-amz-storage-class': 'STANDARD_IA', 'x-amz-server-side-encryption': 'AES256' });
  const timeouts = (await registry.getSingleMetric('s3_put_errors_total')!.get()).values.find((v) => v.labels.code === 'Timeout');
  t.equal(timeouts?.value, 1, 'the first cut at UPLOAD_TIMEOUT_MS');
  proxy.decide = () => ({ status: 503, code: 'SlowDown' });
  await t.rejects(uploaderFor(target, c, createUploadMetrics(new Registry()), log).put({ key: 'raw/c.jsonl.gz', body: BODY, events: 1 }), { name: 'SlowDown' });
  t.equal(proxy.puts.filter((p) => p.key === 'raw/c.jsonl.gz').length, 2, 'no more than UPLOAD_MAX_ATTEMPTS');
});

t.test('no bucket: local mode, the events bucket of an embedded S3 under ./data/s3, whatever the region', async (t) => {
  // Local mode writes under the working directory: a temporary one for this test.
  const cwd = process.cwd();
  const dir = mkdtempSync(join(tmpdir(), 'ingest-local-'));
  process.chdir(dir);
  t.teardown(() => process.chdir(cwd));
  t.teardown(async () => (await import('node:fs/promises')).rm(dir, { recursive: true, force: true }));
  noRegion(t, { AWS_ACCESS_KEY_ID: undefined, AWS_SECRET_ACCESS_KEY: undefined });
  const c = config({});
  const target = await connect(t, c);
  t.equal(target.bucket, LOCAL_BUCKET);
  t.ok(target.local, 'a local server');
  t.match(target.local!.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
  t.equal(await target.client.config.region(), 'us-east-1');
  await uploaderFor(target, c, createUploadMetrics(new Registry()), log).put({ key: 'raw/local.jsonl.gz', body: BODY, events: 1 });
  t.strictSame((await readObjects(target.client, LOCAL_BUCKET)).map((o) => o.key), ['raw/local.jsonl.gz']);
  t.ok(readdirSync(join(dir, LOCAL_DATA_DIR)).includes(LOCAL_BUCKET), `kept under ./${LOCAL_DATA_DIR}`);
});
