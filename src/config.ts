// The only reader of process.env: defaults, validation, and one frozen Config (docs/config.md).
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import envVar from 'env-var';

const MiB = 1024 * 1024;
const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

export type LogLevel = (typeof LOG_LEVELS)[number];

const ACK_LEVELS = ['memory', 'disk', 's3'] as const;
/** When a 202 is sent: events in memory, in the fsynced write-ahead log, or in S3 (docs/durability.md). */
export type AckLevel = (typeof ACK_LEVELS)[number];

export interface WalConfig {
  readonly dir: string;
  readonly maxBytes: number;
  readonly syncIntervalMs: number;
  readonly syncBytes: number;
  readonly segmentBytes: number;
  /** DURABLE_ROOT: a volume shared by every instance (EFS); WAL_DIR and DLQ_DIR are then ROOT/<instance>/wal and dlq. */
  readonly sharedRoot: string | undefined;
  /** An instance directory whose lease is older than this is adopted by a live instance. */
  readonly leaseStaleMs: number;
}

export interface S3Config {
  /** Unset means local mode: an embedded S3-compatible server on loopback. */
  readonly bucket: string | undefined;
  readonly prefix: string;
  readonly endpoint: string | undefined;
  readonly forcePathStyle: boolean;
  readonly object: ObjectSettings;
}

/** Sent with every PUT, as bucket policies may demand; unset: the bucket's defaults apply. */
export interface ObjectSettings {
  readonly sse: SseMode | undefined;
  readonly sseKmsKeyId: string | undefined;
  readonly storageClass: StorageClass | undefined;
}

const SSE_MODES = ['AES256', 'aws:kms'] as const;
export type SseMode = (typeof SSE_MODES)[number];
// The classes S3 takes on a PutObject.
const STORAGE_CLASSES = ['STANDARD', 'REDUCED_REDUNDANCY', 'STANDARD_IA', 'ONEZONE_IA', 'INTELLIGENT_TIERING', 'GLACIER', 'GLACIER_IR', 'DEEP_ARCHIVE', 'OUTPOSTS', 'EXPRESS_ONEZONE'] as const;
export type StorageClass = (typeof STORAGE_CLASSES)[number];

export interface Config {
  readonly port: number;
  readonly host: string;
  readonly metricsPort: number | undefined;
  readonly s3: S3Config;
  readonly maxBodyBytes: number;
  readonly maxEventsPerRequest: number;
  /** Nesting of objects and arrays within one event. */
  readonly maxEventDepth: number;
  /** Capacity of the buffers of all request bodies being read at once. */
  readonly maxBodiesInFlightBytes: number;
  /** Undefined: sized to the file descriptor limit. */
  readonly maxConnections: number | undefined;
  readonly channelMaxEvents: number;
  readonly channelMaxBytes: number;
  readonly batchMaxEvents: number;
  readonly batchMaxBytes: number;
  readonly batchMaxAgeMs: number;
  readonly uploadConcurrency: number;
  readonly uploadQueueMaxBatches: number;
  readonly uploadMaxAttempts: number;
  readonly uploadTimeoutMs: number;
  readonly gzipLevel: number;
  readonly dlqDir: string;
  readonly dlqMaxBytes: number;
  readonly dlqMaxFiles: number;
  readonly dlqTtlSeconds: number;
  readonly dlqReuploadIdleMs: number;
  readonly shutdownTimeoutMs: number;
  readonly apiKeys: readonly string[];
  /** Empty: no CORS. `['*']`: any origin. */
  readonly corsOrigins: readonly string[];
  readonly logLevel: LogLevel;
  readonly instanceId: string;
  readonly ackLevel: AckLevel;
  readonly wal: WalConfig;
  /** Write key metrics as CloudWatch Embedded Metric Format lines to stdout, this often; undefined: off. */
  readonly emfIntervalMs: number | undefined;
  /** Threads of the HTTP front; 1: the main thread alone (src/ingest/workers.ts). */
  readonly workers: number;
}

export class ConfigError extends Error {}

// An instance id goes into object keys, so it is limited to characters that need no escaping.
const INSTANCE_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

const env = envVar.from(process.env, {
  asIntRange(value: string, min: number, max: number): number {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || n < min || n > max) {
      throw new Error(`should be an integer from ${min} to ${max}, got "${value}"`);
    }
    return n;
  },
});

/** Reads and validates the environment; throws ConfigError naming the variable and the expected form. */
export function loadConfig(): Config {
  try {
    return Object.freeze(readConfig());
  } catch (err) {
    if (err instanceof envVar.EnvVarError) throw new ConfigError(withValue(err.message.replace(/^env-var: /, '')));
    throw err;
  }
}

function readConfig(): Config {
  const int = (name: string, fallback: number, min: number, max: number): number =>
    env.get(name).default(String(fallback)).asIntRange(min, max);
  const list = (name: string): string[] =>
    (env.get(name).asArray(',') ?? []).map((s) => s.trim()).filter((s) => s !== '');

  const prefix = env.get('S3_PREFIX').default('raw').asString().replace(/^\/+|\/+$/g, '');
  // The DLQ re-uploads only keys under S3_PREFIX with no empty, "." or ".." segment (src/dlq/scan.ts,
  // keyProblem): a prefix that breaks that rule would send every spilled batch to corrupt/.
  if (prefix === '' || prefix.split('/').some((part) => part === '' || part === '.' || part === '..')) {
    throw new ConfigError(`"S3_PREFIX" should be a non-empty key prefix whose segments between slashes are neither empty nor "." or "..", such as "raw" or "events/raw", got ${JSON.stringify(env.get('S3_PREFIX').asString())}`);
  }
  const bucket = env.get('S3_BUCKET').asString()?.trim() || undefined;
  const metricsPort = env.get('METRICS_PORT').asString() ? int('METRICS_PORT', 0, 0, 65535) : undefined;
  const maxConnections = env.get('MAX_CONNECTIONS').asString() ? int('MAX_CONNECTIONS', 0, 1, 10_000_000) : undefined;
  const maxBodyBytes = int('MAX_BODY_BYTES', MiB, 1, 256 * MiB);
  const maxBodiesInFlightBytes = int('MAX_BODIES_IN_FLIGHT_BYTES', 32 * MiB, 1024, 64 * 1024 * MiB);
  // Each worker thread reads bodies within its share of MAX_BODIES_IN_FLIGHT_BYTES and takes its
  // share of MAX_CONNECTIONS: the default stays where every share holds the largest body.
  const workers = int('WORKERS', Math.max(1, Math.min(containerCores(), Math.floor(maxBodiesInFlightBytes / maxBodyBytes))), 1, 256);
  if (workers > 1 && Math.floor(maxBodiesInFlightBytes / workers) < maxBodyBytes) {
    throw new ConfigError(
      `"MAX_BODIES_IN_FLIGHT_BYTES" should be at least WORKERS x MAX_BODY_BYTES (${workers} x ${maxBodyBytes}: each worker thread reads bodies within its share), got ${maxBodiesInFlightBytes}; raise it or lower WORKERS`,
    );
  }
  if (maxConnections !== undefined && workers > maxConnections) {
    throw new ConfigError(`"WORKERS" should be at most MAX_CONNECTIONS (each worker thread takes its share of the connections), got ${workers} with MAX_CONNECTIONS=${maxConnections}`);
  }

  const id = instanceId(env.get('INSTANCE_ID').asString());
  const sharedRoot = env.get('DURABLE_ROOT').asString()?.trim() || undefined;
  const ownDir = (name: 'wal' | 'dlq') => (sharedRoot === undefined ? undefined : path.join(sharedRoot, id, name));
  const port = int('PORT', 8080, 0, 65535);
  // Both on one port would fail at start-up as "port in use", which names neither variable.
  if (metricsPort !== undefined && metricsPort !== 0 && metricsPort === port) {
    throw new ConfigError(`"METRICS_PORT" should differ from "PORT" (it serves /metrics on a port of its own), got ${metricsPort} for both: unset METRICS_PORT to serve /metrics on PORT`);
  }

  return {
    port,
    host: env.get('HOST').default('0.0.0.0').asString(),
    metricsPort,
    s3: {
      bucket,
      prefix,
      endpoint: env.get('S3_ENDPOINT').asUrlString(),
      forcePathStyle: env.get('S3_FORCE_PATH_STYLE').default('false').asBoolStrict(),
      object: objectSettings(),
    },
    maxBodyBytes,
    maxEventsPerRequest: int('MAX_EVENTS_PER_REQUEST', 1000, 1, 1_000_000),
    maxEventDepth: int('MAX_EVENT_DEPTH', 64, 1, 100_000),
    maxBodiesInFlightBytes,
    maxConnections,
    channelMaxEvents: int('CHANNEL_MAX_EVENTS', 100_000, 1, 100_000_000),
    channelMaxBytes: int('CHANNEL_MAX_BYTES', 64 * MiB, 1024, 64 * 1024 * MiB),
    batchMaxEvents: int('BATCH_MAX_EVENTS', 5000, 1, 10_000_000),
    batchMaxBytes: int('BATCH_MAX_BYTES', 8 * MiB, 1024, 1024 * MiB),
    batchMaxAgeMs: int('BATCH_MAX_AGE_MS', 5000, 10, 3_600_000),
    uploadConcurrency: int('UPLOAD_CONCURRENCY', 4, 1, 256),
    uploadQueueMaxBatches: int('UPLOAD_QUEUE_MAX_BATCHES', 8, 1, 10_000),
    uploadMaxAttempts: int('UPLOAD_MAX_ATTEMPTS', 3, 1, 100),
    uploadTimeoutMs: int('UPLOAD_TIMEOUT_MS', 10_000, 100, 600_000),
    gzipLevel: int('GZIP_LEVEL', 6, 1, 9),
    dlqDir: ownDir('dlq') ?? env.get('DLQ_DIR').default('./data/dlq').asString(),
    dlqMaxBytes: int('DLQ_MAX_BYTES', 1024 * MiB, 1024, Number.MAX_SAFE_INTEGER),
    dlqMaxFiles: int('DLQ_MAX_FILES', 10_000, 1, 10_000_000),
    dlqTtlSeconds: int('DLQ_TTL_SECONDS', 259_200, 1, 10 * 365 * 86_400),
    dlqReuploadIdleMs: int('DLQ_REUPLOAD_IDLE_MS', 1000, 0, 3_600_000),
    shutdownTimeoutMs: int('SHUTDOWN_TIMEOUT_MS', 25_000, 0, 3_600_000),
    apiKeys: list('API_KEYS'),
    corsOrigins: list('CORS_ORIGINS'),
    logLevel: env.get('LOG_LEVEL').default('info').asEnum(LOG_LEVELS),
    instanceId: id,
    ackLevel: env.get('ACK_LEVEL').default('memory').asEnum(ACK_LEVELS),
    wal: {
      dir: ownDir('wal') ?? env.get('WAL_DIR').default('./data/wal').asString(),
      maxBytes: int('WAL_MAX_BYTES', 1024 * MiB, 1024 * 1024, Number.MAX_SAFE_INTEGER),
      syncIntervalMs: int('WAL_SYNC_INTERVAL_MS', 2, 0, 1000),
      syncBytes: int('WAL_SYNC_BYTES', MiB, 1024, 1024 * MiB),
      segmentBytes: int('WAL_SEGMENT_BYTES', 16 * MiB, 64 * 1024, 1024 * MiB),
      sharedRoot,
      leaseStaleMs: int('DURABLE_LEASE_STALE_MS', 60_000, 1000, 3_600_000),
    },
    emfIntervalMs: env.get('METRICS_EMF').default('false').asBoolStrict() ? int('METRICS_EMF_INTERVAL_MS', 60_000, 1000, 3_600_000) : undefined,
    workers,
  };
}

/**
 * The cores this process may use, for the default of WORKERS: its CPU quota (cgroup v2 cpu.max,
 * else cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us) rounded down, at least 1, within
 * os.availableParallelism() (the CPUs it may run on). With no quota in sight, 1: never the host's
 * count, which says nothing of what a container may use (ECS sets a task's CPU limit on the task's
 * cgroup, above the container's, where no quota shows: its task definitions set WORKERS).
 */
export function containerCores(cgroupRoot = '/sys/fs/cgroup', cpus = os.availableParallelism()): number {
  const read = (file: string): string | undefined => {
    try {
      return readFileSync(path.join(cgroupRoot, file), 'utf8').trim();
    } catch {
      return undefined;
    }
  };
  const v2 = read('cpu.max')?.split(/\s+/);
  const [quota, period] = v2 ?? [read('cpu/cpu.cfs_quota_us') ?? read('cpu.cfs_quota_us'), read('cpu/cpu.cfs_period_us') ?? read('cpu.cfs_period_us')];
  // "max" (v2) or -1 (v1): no quota.
  const cores = Math.floor(Number(quota) / Number(period));
  if (!Number.isFinite(cores) || Number(quota) <= 0) return 1;
  return Math.max(1, Math.min(cores, cpus));
}

function objectSettings(): ObjectSettings {
  // Empty counts as unset, as a task definition may leave it.
  const optional = <T extends string>(name: string, values: readonly T[]): T | undefined => (env.get(name).asString() ? env.get(name).asEnum(values) : undefined);
  const sse = optional('S3_SSE', SSE_MODES);
  const sseKmsKeyId = env.get('S3_SSE_KMS_KEY_ID').asString() || undefined;
  if (sseKmsKeyId !== undefined && sse !== 'aws:kms') {
    throw new ConfigError(`"S3_SSE_KMS_KEY_ID" should be set only with S3_SSE=aws:kms (it names the KMS key), got "${sseKmsKeyId}" with S3_SSE ${sse === undefined ? 'unset' : `"${sse}"`}`);
  }
  return { sse, sseKmsKeyId, storageClass: optional('S3_STORAGE_CLASS', STORAGE_CLASSES) };
}

// env-var's own messages name the variable but not what it held.
function withValue(message: string): string {
  const name = /^"([^"]+)"/.exec(message)?.[1];
  if (name === undefined || message.includes(', got "')) return message;
  return `${message}, got "${process.env[name] ?? ''}"`;
}

function instanceId(given: string | undefined): string {
  if (given !== undefined && given !== '') {
    if (!INSTANCE_ID_PATTERN.test(given)) {
      throw new ConfigError(`"INSTANCE_ID" should be 1 to 64 characters of A-Z a-z 0-9 . _ -, got "${given}"`);
    }
    return given;
  }
  // On ECS the metadata URI ends in the container's DockerId, `<task id>-<number>`: unique per task,
  // unlike a Fargate hostname.
  const metadataUri = env.get('ECS_CONTAINER_METADATA_URI_V4').asString();
  const derived = metadataUri?.split('/').filter(Boolean).pop() ?? os.hostname();
  return derived.replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 64) || 'local';
}
