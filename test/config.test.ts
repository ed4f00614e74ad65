// Configuration: loadConfig called with an environment of the test's own and a made-up machine
// (no server, and neither this host's cgroup nor its name). What a user meets when the server
// cannot start (main.ts printing the message) is in test/main.test.ts.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { type Config, ConfigError, loadConfig, type Machine } from '../src/config.js';
import { VARIABLES } from '../src/config/table.js';
import { ROOT } from './helpers/server.js';

const MiB = 1024 * 1024;

/** A machine of `cores` CPUs named `hostname`; a test that must not consult it passes `untouchable`. */
const machine = (cores = 2, hostname = 'test-host'): Machine => ({ cores: () => cores, hostname: () => hostname });
const untouchable: Machine = {
  cores: () => {
    throw new Error('read the machine\'s cores');
  },
  hostname: () => {
    throw new Error('read the host name');
  },
};

const load = (env: Record<string, string> = {}, on = machine()): Config => loadConfig(env, on);

/** The ConfigError's message for `env`, or 'accepted'. */
function refusal(env: Record<string, string>, on = machine()): string {
  try {
    load(env, on);
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
  return 'accepted';
}

t.test('defaults: every field of Config with an empty environment', async (t) => {
  const defaults: Config = {
    port: 8080,
    host: '0.0.0.0',
    metricsPort: 8081,
    metricsRenderIntervalMs: 1000,
    httpIdleTimeoutS: 65,
    s3: { bucket: undefined, prefix: 'raw', endpoint: undefined, forcePathStyle: false, object: { sse: undefined, sseKmsKeyId: undefined, storageClass: undefined } },
    maxBodyBytes: MiB,
    maxEventsPerRequest: 1000,
    maxEventDepth: 64,
    maxBodiesInFlightBytes: 32 * MiB,
    maxConnections: undefined,
    channelMaxEvents: 100_000,
    channelMaxBytes: 64 * MiB,
    batchMaxEvents: 5000,
    batchMaxBytes: 8 * MiB,
    batchMaxAgeMs: 5000,
    uploadConcurrency: 4,
    uploadQueueMaxBatches: 8,
    uploadMaxAttempts: 3,
    uploadTimeoutMs: 10_000,
    gzipLevel: 6,
    compression: 'gzip',
    zstdLevel: 1,
    objectKey: undefined,
    partitionsMaxOpen: 64,
    dlqDir: './data/dlq',
    dlqMaxBytes: 1024 * MiB,
    dlqMaxFiles: 10_000,
    dlqTtlSeconds: 259_200,
    dlqWhenFull: 'evict',
    dlqReuploadIdleMs: 1000,
    shutdownTimeoutMs: 25_000,
    apiKeys: [],
    corsOrigins: ['*'],
    logLevel: 'info',
    instanceId: 'test-host',
    ackLevel: 'memory',
    ackTimeoutMs: 30_000,
    wal: { dir: './data/wal', maxBytes: 1024 * MiB, syncIntervalMs: 2, syncBytes: MiB, segmentBytes: 16 * MiB, sharedRoot: undefined, leaseStaleMs: 60_000 },
    emfIntervalMs: undefined,
    workers: 2,
    idempotency: { windowMs: 600_000, maxKeys: 1_000_000 },
  };
  t.strictSame(load(), defaults);
});

// The messages users have met so far; main prints them after "invalid configuration: ".
const refused: [Record<string, string>, RegExp][] = [
  [{ BATCH_MAX_EVENTS: 'abc' }, /"BATCH_MAX_EVENTS" should be an integer from 1 to \d+, got "abc"/],
  [{ GZIP_LEVEL: '10' }, /"GZIP_LEVEL" should be an integer from 1 to 9, got "10"/],
  [{ COMPRESSION: 'brotli' }, /"COMPRESSION" should be one of \[gzip, zstd, none\], got "brotli"/],
  [{ OBJECT_KEY: '{prefix}/{hour}/{batch}' }, /^"OBJECT_KEY" has an unknown variable \{hour\}: .*, got "\{prefix\}\/\{hour\}\/\{batch\}"$/],
  [{ OBJECT_KEY: '{prefix}/{yyyy}' }, /^"OBJECT_KEY" should hold \{batch\}/],
  [{ PORT: '-1' }, /"PORT" should be an integer from 0 to 65535, got "-1"/],
  [{ MAX_BODY_BYTES: '1.5' }, /"MAX_BODY_BYTES" should be an integer/],
  [{ S3_FORCE_PATH_STYLE: 'maybe' }, /"S3_FORCE_PATH_STYLE" should be either "true", "false".*, got "maybe"/],
  [{ LOG_LEVEL: 'loud' }, /"LOG_LEVEL" should be one of \[trace, debug, info, warn, error, fatal, silent\], got "loud"/],
  [{ INSTANCE_ID: 'a/b' }, /"INSTANCE_ID" should be 1 to 64 characters/],
  [{ S3_ENDPOINT: 'not a url' }, /"S3_ENDPOINT" should be a valid URL.*, got "not a url"/],
  [{ S3_PREFIX: '/' }, /"S3_PREFIX" should be a non-empty key prefix/],
  // Accepted on main, then every spilled batch went to corrupt/ (its key failed the DLQ's check).
  [{ S3_PREFIX: 'a//b' }, /"S3_PREFIX" should be a non-empty key prefix whose segments between slashes are neither empty nor "\." or "\.\.", such as "raw" or "events\/raw", got "a\/\/b"/],
  [{ S3_PREFIX: 'raw/../x' }, /"S3_PREFIX" should be a non-empty key prefix whose segments .*, got "raw\/\.\.\/x"/],
  [{ S3_PREFIX: '.' }, /"S3_PREFIX" should be a non-empty key prefix whose segments .*, got "\."/],
  [{ MAX_EVENT_DEPTH: '0' }, /"MAX_EVENT_DEPTH" should be an integer from 1 to 100000, got "0"/],
  [{ MAX_BODIES_IN_FLIGHT_BYTES: '1 MiB' }, /"MAX_BODIES_IN_FLIGHT_BYTES" should be an integer from 1024 to \d+, got "1 MiB"/],
  [{ MAX_CONNECTIONS: 'many' }, /"MAX_CONNECTIONS" should be an integer from 1 to \d+, got "many"/],
  [{ S3_SSE: 'kms' }, /"S3_SSE" should be one of \[AES256, aws:kms\], got "kms"/],
  [{ S3_SSE: 'AES256', S3_SSE_KMS_KEY_ID: 'alias/x' }, /"S3_SSE_KMS_KEY_ID" should be set only with S3_SSE=aws:kms \(it names the KMS key\), got "alias\/x" with S3_SSE "AES256"/],
  [{ S3_SSE_KMS_KEY_ID: 'alias/x' }, /"S3_SSE_KMS_KEY_ID" should be set only with S3_SSE=aws:kms .*, got "alias\/x" with S3_SSE unset/],
  // Was "port in use" at start-up, which names neither variable.
  [{ PORT: '8090', METRICS_PORT: '8090' }, /"METRICS_PORT" should differ from "PORT" \(it serves \/metrics on a port of its own\), got 8090 for both: set METRICS_PORT=ingest to serve \/metrics on PORT/],
  // A port, or the word that opts in to /metrics on the ingest port.
  ...['', 'PORT', 'same', '-1', '65536', '80.5'].map((value): [Record<string, string>, RegExp] => [{ METRICS_PORT: value }, new RegExp(`^"METRICS_PORT" should be an integer from 0 to 65535, or "ingest" to serve /metrics on PORT, got "${value.replace('.', '\\.')}"$`)]),
  [{ S3_STORAGE_CLASS: 'cheap' }, /"S3_STORAGE_CLASS" should be one of \[STANDARD, .*INTELLIGENT_TIERING.*\], got "cheap"/],
  ...['0', 'two', '1.5', '257', '-1'].map((value): [Record<string, string>, RegExp] => [{ WORKERS: value }, new RegExp(`^"WORKERS" should be an integer from 1 to 256, got "${value.replace('.', '\\.')}"$`)]),
  [{ WORKERS: '4', MAX_BODY_BYTES: String(MiB), MAX_BODIES_IN_FLIGHT_BYTES: String(2 * MiB) }, /"MAX_BODIES_IN_FLIGHT_BYTES" should be at least WORKERS x MAX_BODY_BYTES \(4 x 1048576: each worker thread reads bodies within its share\), got 2097152; raise it or lower WORKERS/],
  [{ WORKERS: '4', MAX_CONNECTIONS: '3' }, /"WORKERS" should be at most MAX_CONNECTIONS \(each worker thread takes its share of the connections\), got 4 with MAX_CONNECTIONS=3/],
  // Each started fine, then matched no browser's Origin and refused every browser POST (issue 23).
  [{ CORS_ORIGINS: 'http://a.com/' }, /^"CORS_ORIGINS" should be a comma-separated list of origins written as browsers send them, .*, got "http:\/\/a\.com\/": browsers send it as "http:\/\/a\.com"$/],
  [{ CORS_ORIGINS: 'https://ok.example,localhost:3000' }, /^"CORS_ORIGINS" should be .*, got "localhost:3000": it must begin with http:\/\/ or https:\/\/$/],
  [{ CORS_ORIGINS: 'app.example.com' }, /^"CORS_ORIGINS" should be .*, got "app\.example\.com": not a URL \(a scheme such as https:\/\/ is needed\)$/],
  [{ CORS_ORIGINS: 'https://App.Example.com' }, /got "https:\/\/App\.Example\.com": browsers send it as "https:\/\/app\.example\.com"$/],
  [{ CORS_ORIGINS: 'https://a.example:443' }, /got "https:\/\/a\.example:443": browsers send it as "https:\/\/a\.example"$/],
  [{ CORS_ORIGINS: 'https://a.example/app' }, /browsers send it as "https:\/\/a\.example"$/],
  [{ CORS_ORIGINS: 'ftp://a.example' }, /it must begin with http:\/\/ or https:\/\/$/],
  [{ CORS_ORIGINS: 'https://*.com' }, /got "https:\/\/\*\.com": a wildcard is only `\*\.` before a domain of two labels or more/],
  [{ CORS_ORIGINS: 'https://app*.example.com' }, /a wildcard is only/],
  [{ CORS_ORIGINS: 'https://*.*.example.com' }, /a wildcard is only/],
  [{ CORS_ORIGINS: '*.example.com' }, /^"CORS_ORIGINS" should be .*, got "\*\.example\.com": not a URL/],
  // Empty is a value, and a bad one, where the variable has a default of its own.
  [{ GZIP_LEVEL: '' }, /^"GZIP_LEVEL" should be an integer from 1 to 9, got ""$/],
  [{ WORKERS: '' }, /^"WORKERS" should be an integer from 1 to 256, got ""$/],
  [{ LOG_LEVEL: '' }, /^"LOG_LEVEL" should be one of \[.*\], got ""$/],
  [{ LOG_LEVEL: 'INFO' }, /^"LOG_LEVEL" should be one of \[.*\], got "INFO"$/],
  [{ S3_FORCE_PATH_STYLE: '' }, /^"S3_FORCE_PATH_STYLE" should be either "true", "false", "TRUE", or "FALSE", got ""$/],
  [{ S3_ENDPOINT: '' }, /^"S3_ENDPOINT" should be a valid URL, got ""$/],
  [{ INSTANCE_ID: 'x'.repeat(65) }, /^"INSTANCE_ID" should be 1 to 64 characters of A-Z a-z 0-9 \. _ -, got "x{65}"$/],
  // Checked even while METRICS_EMF is off, as every other value.
  [{ METRICS_EMF_INTERVAL_MS: 'often' }, /^"METRICS_EMF_INTERVAL_MS" should be an integer from 1000 to 3600000, got "often"$/],
];

t.test('refuses a bad value with a message naming the variable, the expected form and the value', async (t) => {
  for (const [env, message] of refused) t.match(refusal(env), message, JSON.stringify(env));
});

// Every integer variable: [min, max, where its value lands, what else the test sets for it].
const ranges: Record<string, [number, number, (c: Config) => unknown, Record<string, string>?]> = {
  PORT: [0, 65535, (c) => c.port],
  HTTP_IDLE_TIMEOUT_S: [1, 900, (c) => c.httpIdleTimeoutS],
  METRICS_RENDER_INTERVAL_MS: [0, 60_000, (c) => c.metricsRenderIntervalMs],
  MAX_BODY_BYTES: [1, 256 * MiB, (c) => c.maxBodyBytes],
  MAX_EVENTS_PER_REQUEST: [1, 1_000_000, (c) => c.maxEventsPerRequest],
  MAX_EVENT_DEPTH: [1, 100_000, (c) => c.maxEventDepth],
  MAX_BODIES_IN_FLIGHT_BYTES: [1024, 64 * 1024 * MiB, (c) => c.maxBodiesInFlightBytes],
  MAX_CONNECTIONS: [1, 10_000_000, (c) => c.maxConnections],
  WORKERS: [1, 256, (c) => c.workers, { MAX_BODIES_IN_FLIGHT_BYTES: String(256 * MiB) }],
  CHANNEL_MAX_EVENTS: [1, 100_000_000, (c) => c.channelMaxEvents],
  CHANNEL_MAX_BYTES: [1024, 64 * 1024 * MiB, (c) => c.channelMaxBytes],
  BATCH_MAX_EVENTS: [1, 10_000_000, (c) => c.batchMaxEvents],
  BATCH_MAX_BYTES: [1024, 1024 * MiB, (c) => c.batchMaxBytes],
  BATCH_MAX_AGE_MS: [10, 3_600_000, (c) => c.batchMaxAgeMs],
  UPLOAD_CONCURRENCY: [1, 256, (c) => c.uploadConcurrency],
  UPLOAD_QUEUE_MAX_BATCHES: [1, 10_000, (c) => c.uploadQueueMaxBatches],
  UPLOAD_MAX_ATTEMPTS: [1, 100, (c) => c.uploadMaxAttempts],
  UPLOAD_TIMEOUT_MS: [100, 600_000, (c) => c.uploadTimeoutMs],
  GZIP_LEVEL: [1, 9, (c) => c.gzipLevel],
  ZSTD_LEVEL: [1, 19, (c) => c.zstdLevel],
  PARTITIONS_MAX_OPEN: [1, 100_000, (c) => c.partitionsMaxOpen],
  DLQ_MAX_BYTES: [1024, Number.MAX_SAFE_INTEGER, (c) => c.dlqMaxBytes],
  DLQ_MAX_FILES: [1, 10_000_000, (c) => c.dlqMaxFiles],
  DLQ_TTL_SECONDS: [1, 315_360_000, (c) => c.dlqTtlSeconds],
  DLQ_REUPLOAD_IDLE_MS: [0, 3_600_000, (c) => c.dlqReuploadIdleMs],
  ACK_TIMEOUT_MS: [100, 3_600_000, (c) => c.ackTimeoutMs],
  WAL_MAX_BYTES: [MiB, Number.MAX_SAFE_INTEGER, (c) => c.wal.maxBytes],
  WAL_SYNC_INTERVAL_MS: [0, 1000, (c) => c.wal.syncIntervalMs],
  WAL_SYNC_BYTES: [1024, 1024 * MiB, (c) => c.wal.syncBytes],
  WAL_SEGMENT_BYTES: [64 * 1024, 1024 * MiB, (c) => c.wal.segmentBytes],
  DURABLE_LEASE_STALE_MS: [1000, 3_600_000, (c) => c.wal.leaseStaleMs],
  IDEMPOTENCY_WINDOW_SECONDS: [1, 86_400, (c) => c.idempotency.windowMs / 1000],
  IDEMPOTENCY_MAX_KEYS: [1, 100_000_000, (c) => c.idempotency.maxKeys],
  SHUTDOWN_TIMEOUT_MS: [0, 3_600_000, (c) => c.shutdownTimeoutMs],
  METRICS_EMF_INTERVAL_MS: [1000, 3_600_000, (c) => c.emfIntervalMs, { METRICS_EMF: 'true' }],
};

t.test('every integer takes its minimum and maximum, and refuses one past each', async (t) => {
  const integers = Object.entries(VARIABLES).filter(([, variable]) => /^\d+ (to \d+|and up)$/.test(variable.accepted));
  t.same(integers.map(([name]) => name).sort(), Object.keys(ranges).sort(), 'every integer of the table is here');
  for (const [name, [min, max, field, also = {}]] of Object.entries(ranges)) {
    // One thread, so that no rule between WORKERS and the others comes in.
    const env = (value: number) => ({ WORKERS: '1', ...also, [name]: String(value) });
    t.equal(field(load(env(min))), min, `${name}=${min}`);
    t.equal(field(load(env(max))), max, `${name}=${max}`);
    for (const value of [min - 1, max + 1]) t.equal(refusal(env(value)), `"${name}" should be an integer from ${min} to ${max}, got "${value}"`, `${name}=${value}`);
  }
});

t.test('values of the other kinds', async (t) => {
  t.equal(load({ GZIP_LEVEL: ' 7 ' }).gzipLevel, 7, 'blanks around an integer');
  for (const [value, expected] of [['true', true], ['TRUE', true], ['False', false]] as const) t.equal(load({ S3_FORCE_PATH_STYLE: value }).s3.forcePathStyle, expected, `S3_FORCE_PATH_STYLE=${value}`);
  for (const level of ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']) t.equal(load({ LOG_LEVEL: level }).logLevel, level);
  for (const level of ['memory', 'disk', 's3']) t.equal(load({ ACK_LEVEL: level }).ackLevel, level);
  t.strictSame(load({ S3_SSE: 'aws:kms', S3_SSE_KMS_KEY_ID: 'alias/x', S3_STORAGE_CLASS: 'STANDARD_IA' }).s3.object, { sse: 'aws:kms', sseKmsKeyId: 'alias/x', storageClass: 'STANDARD_IA' });
  t.equal(load({ S3_SSE: 'AES256' }).s3.object.sse, 'AES256');
  t.equal(load({ S3_PREFIX: '/events/raw/' }).s3.prefix, 'events/raw', 'slashes at either end dropped');
  t.equal(load({ S3_ENDPOINT: 'http://127.0.0.1:9000' }).s3.endpoint, 'http://127.0.0.1:9000/', 'as the URL class writes it');
  t.equal(load({ S3_BUCKET: ' events ' }).s3.bucket, 'events');
  t.strictSame(load({ API_KEYS: ' k1, ,k2,' }).apiKeys, ['k1', 'k2'], 'blanks and empty entries dropped');
  t.strictSame(load({ API_KEYS: '' }).apiKeys, []);
  t.strictSame(load({ CORS_ORIGINS: '*' }).corsOrigins, ['*']);
  t.strictSame(load({ CORS_ORIGINS: '' }).corsOrigins, ['*'], 'empty: as unset, any origin');
  t.strictSame(
    load({ CORS_ORIGINS: ' https://app.example.com, http://localhost:3000,https://*.example.com:8443,http://[::1]:8080 ' }).corsOrigins,
    ['https://app.example.com', 'http://localhost:3000', 'https://*.example.com:8443', 'http://[::1]:8080'],
    'origins as browsers send them, and a subdomain wildcard',
  );
  t.match(load({ HOST: '127.0.0.1', DLQ_DIR: '/var/dlq', WAL_DIR: '/var/wal' }), { host: '127.0.0.1', dlqDir: '/var/dlq', wal: { dir: '/var/wal' } });
  t.equal(load({ METRICS_EMF: 'true' }).emfIntervalMs, 60_000);
  t.equal(load({ METRICS_EMF: 'false', METRICS_EMF_INTERVAL_MS: '5000' }).emfIntervalMs, undefined, 'off: no interval');
});

t.test('empty counts as unset where unset means off or derived, as a task definition may leave it', async (t) => {
  const empty = { MAX_CONNECTIONS: '', S3_BUCKET: '  ', S3_SSE: '', S3_SSE_KMS_KEY_ID: '', S3_STORAGE_CLASS: '', INSTANCE_ID: '', DURABLE_ROOT: ' ' };
  t.strictSame(load(empty), load());
});

t.test('rules between variables: each bound accepted, one past it refused', async (t) => {
  t.equal(load({ WORKERS: '2', MAX_BODY_BYTES: String(MiB), MAX_BODIES_IN_FLIGHT_BYTES: String(2 * MiB) }).workers, 2, 'each worker holds the largest body');
  t.match(refusal({ WORKERS: '2', MAX_BODY_BYTES: String(MiB), MAX_BODIES_IN_FLIGHT_BYTES: String(2 * MiB - 1) }), /^"MAX_BODIES_IN_FLIGHT_BYTES" should be at least WORKERS x MAX_BODY_BYTES/);
  t.equal(load({ WORKERS: '1', MAX_BODY_BYTES: String(4 * MiB), MAX_BODIES_IN_FLIGHT_BYTES: String(MiB) }).workers, 1, 'one thread: no share to hold');
  t.equal(load({ WORKERS: '3', MAX_CONNECTIONS: '3' }).workers, 3);
  t.match(refusal({ WORKERS: '4', MAX_CONNECTIONS: '3' }), /^"WORKERS" should be at most MAX_CONNECTIONS/);
  t.equal(load({ PORT: '0', METRICS_PORT: '0' }).metricsPort, 0, 'two free ports');
  t.equal(load({ PORT: '8080', METRICS_PORT: '8081' }).metricsPort, 8081);
  t.match(refusal({ METRICS_PORT: '8080' }), /^"METRICS_PORT" should differ from "PORT"/, 'PORT by default');
  t.match(refusal({ PORT: '8081' }), /^"METRICS_PORT" should differ from "PORT" .*got 8081 for both/, 'METRICS_PORT by default');
  t.equal(load({ METRICS_PORT: 'ingest' }).metricsPort, undefined, 'ingest: /metrics on PORT, by choice');
  t.equal(load({ METRICS_PORT: ' ingest ', PORT: '8081' }).metricsPort, undefined);
  t.equal(load({ METRICS_PORT: '0' }).metricsPort, 0, 'any free port');
  t.equal(load({ ACK_LEVEL: 'disk', DLQ_MAX_BYTES: '4096', BATCH_MAX_BYTES: '4096', MAX_BODY_BYTES: '2048' }).dlqMaxBytes, 4096, 'a DLQ that holds one whole batch');
  t.equal(
    refusal({ ACK_LEVEL: 's3', DLQ_MAX_BYTES: '4095', BATCH_MAX_BYTES: '4096', MAX_BODY_BYTES: '2048' }),
    '"DLQ_MAX_BYTES" should be at least BATCH_MAX_BYTES and MAX_BODY_BYTES (4096) with ACK_LEVEL=s3, where a full DLQ refuses batches instead of evicting them, got 4095',
  );
  t.match(refusal({ ACK_LEVEL: 'disk', DLQ_MAX_BYTES: '4096', BATCH_MAX_BYTES: '4096', MAX_BODY_BYTES: '8192' }), /^"DLQ_MAX_BYTES" should be at least BATCH_MAX_BYTES and MAX_BODY_BYTES \(8192\)/, 'one event alone can be a batch up to MAX_BODY_BYTES');
  t.equal(load({ DLQ_MAX_BYTES: '1024', BATCH_MAX_BYTES: '4096' }).dlqMaxBytes, 1024, 'at memory the DLQ evicts: any size');
});

t.test('the DLQ by ACK_LEVEL: memory evicts and expires after 3 days; disk and s3 refuse when full and never expire unless DLQ_TTL_SECONDS is set', async (t) => {
  t.match(load({}), { dlqWhenFull: 'evict', dlqTtlSeconds: 259_200 });
  for (const level of ['disk', 's3']) {
    const config = load({ ACK_LEVEL: level });
    t.equal(config.dlqWhenFull, 'refuse', level);
    t.equal(config.dlqTtlSeconds, undefined, `${level}: never expires`);
    t.equal(load({ ACK_LEVEL: level, DLQ_TTL_SECONDS: '600' }).dlqTtlSeconds, 600, `${level}: expiring is an explicit choice`);
  }
});

t.test('WORKERS by default: the cores the machine gives, within the bodies in flight and 256', async (t) => {
  t.equal(load({}, machine(1)).workers, 1);
  t.equal(load({}, machine(4)).workers, 4);
  t.equal(load({ MAX_BODY_BYTES: String(16 * MiB) }, machine(4)).workers, 2, '32 MiB in flight hold two 16 MiB bodies');
  t.equal(load({ MAX_BODY_BYTES: String(64 * MiB) }, machine(4)).workers, 1, 'at least 1');
  t.equal(load({ MAX_BODIES_IN_FLIGHT_BYTES: String(1024 * MiB) }, machine(1000)).workers, 256, 'at most 256');
  t.equal(load({ WORKERS: '3', INSTANCE_ID: 'i' }, untouchable).workers, 3, 'set: the machine is not asked');
});

t.test('INSTANCE_ID by default: the ECS container id, else the host name, fit for an object key', async (t) => {
  t.equal(load({ WORKERS: '1', INSTANCE_ID: 'task-7' }, untouchable).instanceId, 'task-7', 'set: the machine is not asked');
  t.equal(load({ INSTANCE_ID: 'x'.repeat(64) }).instanceId, 'x'.repeat(64));
  const ecs = 'http://169.254.170.2/v4/3f8a9b2c1d4e4f5a8b7c6d5e4f3a2b1c-2531612879';
  t.equal(load({ WORKERS: '1', ECS_CONTAINER_METADATA_URI_V4: ecs }, untouchable).instanceId, '3f8a9b2c1d4e4f5a8b7c6d5e4f3a2b1c-2531612879');
  t.equal(load({ ECS_CONTAINER_METADATA_URI_V4: `${ecs}/` }).instanceId, '3f8a9b2c1d4e4f5a8b7c6d5e4f3a2b1c-2531612879', 'a trailing slash');
  t.equal(load({ ECS_CONTAINER_METADATA_URI_V4: '' }).instanceId, 'test-host', 'empty: the host name');
  t.equal(load({}, machine(1, 'ip-10-0-0-1.ec2 internal')).instanceId, 'ip-10-0-0-1.ec2-internal', 'other characters become dashes');
  t.equal(load({}, machine(1, 'h'.repeat(100))).instanceId, 'h'.repeat(64), 'at most 64');
  t.equal(load({}, machine(1, '')).instanceId, 'local', 'no name at all');
});

t.test('DURABLE_ROOT: the WAL and DLQ directories are the instance\'s own under it', async (t) => {
  const config = load({ DURABLE_ROOT: ' /mnt/efs ', INSTANCE_ID: 'task-7', WAL_DIR: '/ignored/wal', DLQ_DIR: '/ignored/dlq' });
  t.match(config, { dlqDir: '/mnt/efs/task-7/dlq', wal: { dir: '/mnt/efs/task-7/wal', sharedRoot: '/mnt/efs' } });
});

t.test('the Config is frozen all the way down', async (t) => {
  const config = load({ API_KEYS: 'k1,k2', CORS_ORIGINS: '*' });
  const unfrozen: string[] = [];
  const walk = (value: unknown, at: string): void => {
    if (typeof value !== 'object' || value === null) return;
    if (!Object.isFrozen(value)) unfrozen.push(at);
    for (const [key, inner] of Object.entries(value)) walk(inner, `${at}.${key}`);
  };
  walk(config, 'config');
  t.same(unfrozen, []);
  t.throws(() => (config.apiKeys as string[]).push('k3'), TypeError);
  t.throws(() => ((config.s3.object as { sse: string }).sse = 'AES256'), TypeError);
  t.throws(() => ((config.wal as { dir: string }).dir = '/tmp'), TypeError);
});

t.test('reads nothing but its argument', async (t) => {
  const saved = process.env;
  const touched: PropertyKey[] = [];
  const read: PropertyKey[] = [];
  const env = new Proxy({ GZIP_LEVEL: '3' } as NodeJS.ProcessEnv, {
    get: (target, name) => {
      read.push(name);
      return Reflect.get(target, name);
    },
  });
  process.env = new Proxy({ ...saved, PORT: 'nonsense', GZIP_LEVEL: '9' }, {
    get: (target, name) => {
      touched.push(name);
      return Reflect.get(target, name);
    },
  });
  let config: Config;
  try {
    config = loadConfig(env, machine());
  } finally {
    process.env = saved;
  }
  t.same(touched, [], 'process.env untouched');
  t.match(config, { port: 8080, gzipLevel: 3 });
  const names = new Set([...Object.keys(VARIABLES), 'ECS_CONTAINER_METADATA_URI_V4']);
  t.same(read.filter((name) => typeof name !== 'string' || !names.has(name)), [], 'and of its argument, only the variables of the table (and the ECS metadata URI, for INSTANCE_ID)');
});

t.test('without an argument, it reads process.env', async (t) => {
  const saved = process.env;
  process.env = { GZIP_LEVEL: '2' };
  try {
    t.equal(loadConfig(undefined, machine()).gzipLevel, 2);
  } finally {
    process.env = saved;
  }
});

t.test('nothing else in src/ reads process.env, but the dlq command\'s process entry, which hands it to the command', async (t) => {
  const files = (dir: string): string[] => readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
  const readers = files(`${ROOT}src`).flatMap((file) =>
    readFileSync(file, 'utf8')
      .split('\n')
      .flatMap((line, i) => (line.includes('process.env') && !line.trimStart().startsWith('//') ? [`${file.slice(ROOT.length)}:${i + 1}`] : [])),
  ).sort();
  t.equal(readers.length, 2, readers.join(', '));
  t.match(readers[0], /^src\/config\.ts:/, 'the default argument of loadConfig');
  t.match(readers[1], /^src\/dlq\/cli\.ts:/, 'the dlq process gives the command its environment');
});

t.test('OBJECT_KEY set: the template parsed (its field and finest time variable); unset: undefined, the default layout', async (t) => {
  const config = load({ OBJECT_KEY: '{prefix}/dt={yyyy}-{MM}-{dd}/type={event.type}/{batch}', PARTITIONS_MAX_OPEN: '8', COMPRESSION: 'zstd' });
  t.match(config.objectKey, { text: '{prefix}/dt={yyyy}-{MM}-{dd}/type={event.type}/{batch}', field: 'type', finest: 'dd' });
  t.equal(config.partitionsMaxOpen, 8);
  t.equal(config.compression, 'zstd');
  t.equal(load().objectKey, undefined);
});
