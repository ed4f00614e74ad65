// The one place that turns environment variables into settings: each variable read as its row in
// config/table.ts says, every value validated, the rules between them checked, defaults derived,
// and one deep-frozen Config returned (docs/config.md). Nothing else in src/ reads process.env.
import path from 'node:path';
import { type Machine, THIS_MACHINE } from './config/machine.js';
import type { KeyTemplate } from './config/key-template.js';
import { ConfigError } from './config/parse.js';
import { type AckLevel, type Codec, type LogLevel, MAX_WORKERS, METRICS_ON_INGEST_PORT, readVariables, type SseMode, type StorageClass, type Values } from './config/table.js';

export { containerCores, type Machine } from './config/machine.js';
export { ConfigError } from './config/parse.js';
export type { AckLevel, Codec, LogLevel, SseMode, StorageClass } from './config/table.js';

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

export interface Config {
  readonly port: number;
  readonly host: string;
  /** Undefined: /metrics on the ingest port (METRICS_PORT=ingest). */
  readonly metricsPort: number | undefined;
  /** Scrapes within this time of a render get its page. */
  readonly metricsRenderIntervalMs: number;
  /** The least time an idle keep-alive connection is kept open, and what responses say in `Keep-Alive: timeout=`. */
  readonly httpIdleTimeoutS: number;
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
  readonly compression: Codec;
  readonly zstdLevel: number;
  /** OBJECT_KEY; undefined: the default layout (objectKey in src/upload/batcher.ts). */
  readonly objectKey: KeyTemplate | undefined;
  readonly partitionsMaxOpen: number;
  readonly dlqDir: string;
  readonly dlqMaxBytes: number;
  readonly dlqMaxFiles: number;
  /** Undefined: files never expire (the default at ACK_LEVEL=disk and s3). */
  readonly dlqTtlSeconds: number | undefined;
  /** `evict` at ACK_LEVEL=memory; `refuse` at disk and s3, where every DLQ file holds acknowledged events. */
  readonly dlqWhenFull: 'evict' | 'refuse';
  readonly dlqReuploadIdleMs: number;
  readonly shutdownTimeoutMs: number;
  readonly apiKeys: readonly string[];
  /** Origins as browsers send them, `https://*.example.com` forms, or `['*']` (the default): any origin. */
  readonly corsOrigins: readonly string[];
  readonly logLevel: LogLevel;
  readonly instanceId: string;
  readonly ackLevel: AckLevel;
  readonly ackTimeoutMs: number;
  readonly wal: WalConfig;
  /** Write key metrics as CloudWatch Embedded Metric Format lines to stdout, this often; undefined: off. */
  readonly emfIntervalMs: number | undefined;
  /** Threads of the HTTP front; 1: the main thread alone (src/ingest/workers.ts). */
  readonly workers: number;
  /** Idempotency-Key (src/idempotency.ts): how long a key is remembered, and how many are held at most. */
  readonly idempotency: { readonly windowMs: number; readonly maxKeys: number };
}

/**
 * The settings `env` gives, validated, with defaults filled in. Reads nothing but `env` and, for
 * the defaults of WORKERS and INSTANCE_ID, `machine`. Throws a ConfigError naming the variable,
 * what it expects and what it got.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, machine: Machine = THIS_MACHINE): Config {
  const values = readVariables(env);
  const workers = values.WORKERS ?? defaultWorkers(values, machine);
  for (const rule of RULES) {
    const broken = rule(values, workers);
    if (broken !== undefined) throw new ConfigError(broken);
  }
  return deepFreeze(assemble(values, workers, values.INSTANCE_ID ?? derivedInstanceId(env, machine)));
}

// Each worker thread reads bodies within its share of MAX_BODIES_IN_FLIGHT_BYTES and takes its
// share of MAX_CONNECTIONS: the default stays where every share holds the largest body.
function defaultWorkers(values: Values, machine: Machine): number {
  return Math.max(1, Math.min(machine.cores(), Math.floor(values.MAX_BODIES_IN_FLIGHT_BYTES / values.MAX_BODY_BYTES), MAX_WORKERS));
}

/** DLQ_TTL_SECONDS unset at ACK_LEVEL=memory: 3 days. */
const DLQ_TTL_MEMORY_SECONDS = 259_200;

/** What one variable cannot say alone, checked in this order once each is good alone: a broken rule's message, or undefined. */
const RULES: ((values: Values, workers: number) => string | undefined)[] = [
  ({ MAX_BODIES_IN_FLIGHT_BYTES: inFlight, MAX_BODY_BYTES: maxBody }, workers) =>
    workers > 1 && Math.floor(inFlight / workers) < maxBody
      ? `"MAX_BODIES_IN_FLIGHT_BYTES" should be at least WORKERS x MAX_BODY_BYTES (${workers} x ${maxBody}: each worker thread reads bodies within its share), got ${inFlight}; raise it or lower WORKERS`
      : undefined,
  ({ MAX_CONNECTIONS: maxConnections }, workers) =>
    maxConnections !== undefined && workers > maxConnections
      ? `"WORKERS" should be at most MAX_CONNECTIONS (each worker thread takes its share of the connections), got ${workers} with MAX_CONNECTIONS=${maxConnections}`
      : undefined,
  // Both on one port would fail at start-up as "port in use", which names neither variable.
  ({ METRICS_PORT: metricsPort, PORT: port }) =>
    metricsPort !== undefined && metricsPort !== 0 && metricsPort === port
      ? `"METRICS_PORT" should differ from "PORT" (it serves /metrics on a port of its own), got ${metricsPort} for both: set METRICS_PORT=${METRICS_ON_INGEST_PORT} to serve /metrics on PORT`
      : undefined,
  // Refusing when full, a batch bigger than the whole DLQ could never be spilled. A batch is cut
  // before it passes BATCH_MAX_BYTES, or is one request's event alone (up to MAX_BODY_BYTES); its
  // gzip is smaller than its JSON lines for any JSON worth sending.
  ({ ACK_LEVEL: ackLevel, DLQ_MAX_BYTES: dlqMax, BATCH_MAX_BYTES: batchMax, MAX_BODY_BYTES: maxBody }) =>
    ackLevel !== 'memory' && dlqMax < Math.max(batchMax, maxBody)
      ? `"DLQ_MAX_BYTES" should be at least BATCH_MAX_BYTES and MAX_BODY_BYTES (${Math.max(batchMax, maxBody)}) with ACK_LEVEL=${ackLevel}, where a full DLQ refuses batches instead of evicting them, got ${dlqMax}`
      : undefined,
  ({ S3_SSE_KMS_KEY_ID: keyId, S3_SSE: sse }) =>
    keyId !== undefined && sse !== 'aws:kms'
      ? `"S3_SSE_KMS_KEY_ID" should be set only with S3_SSE=aws:kms (it names the KMS key), got "${keyId}" with S3_SSE ${sse === undefined ? 'unset' : `"${sse}"`}`
      : undefined,
];

// On ECS the metadata URI ends in the container's DockerId, `<task id>-<number>`: unique per task,
// unlike a Fargate hostname.
function derivedInstanceId(env: NodeJS.ProcessEnv, machine: Machine): string {
  const derived = env.ECS_CONTAINER_METADATA_URI_V4?.split('/').filter(Boolean).pop() ?? machine.hostname();
  return derived.replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 64) || 'local';
}

function walOf(v: Values, ownDir: string | undefined): Config['wal'] {
  return {
    dir: ownDir ?? v.WAL_DIR,
    maxBytes: v.WAL_MAX_BYTES,
    syncIntervalMs: v.WAL_SYNC_INTERVAL_MS,
    syncBytes: v.WAL_SYNC_BYTES,
    segmentBytes: v.WAL_SEGMENT_BYTES,
    sharedRoot: v.DURABLE_ROOT,
    leaseStaleMs: v.DURABLE_LEASE_STALE_MS,
  };
}

function assemble(v: Values, workers: number, instanceId: string): Config {
  const sharedRoot = v.DURABLE_ROOT;
  const ownDir = (name: 'wal' | 'dlq') => (sharedRoot === undefined ? undefined : path.join(sharedRoot, instanceId, name));
  return {
    port: v.PORT,
    host: v.HOST,
    metricsPort: v.METRICS_PORT,
    metricsRenderIntervalMs: v.METRICS_RENDER_INTERVAL_MS,
    httpIdleTimeoutS: v.HTTP_IDLE_TIMEOUT_S,
    s3: {
      bucket: v.S3_BUCKET,
      prefix: v.S3_PREFIX,
      endpoint: v.S3_ENDPOINT,
      forcePathStyle: v.S3_FORCE_PATH_STYLE,
      object: { sse: v.S3_SSE, sseKmsKeyId: v.S3_SSE_KMS_KEY_ID, storageClass: v.S3_STORAGE_CLASS },
    },
    maxBodyBytes: v.MAX_BODY_BYTES,
    maxEventsPerRequest: v.MAX_EVENTS_PER_REQUEST,
    maxEventDepth: v.MAX_EVENT_DEPTH,
    maxBodiesInFlightBytes: v.MAX_BODIES_IN_FLIGHT_BYTES,
    maxConnections: v.MAX_CONNECTIONS,
    channelMaxEvents: v.CHANNEL_MAX_EVENTS,
    channelMaxBytes: v.CHANNEL_MAX_BYTES,
    batchMaxEvents: v.BATCH_MAX_EVENTS,
    batchMaxBytes: v.BATCH_MAX_BYTES,
    batchMaxAgeMs: v.BATCH_MAX_AGE_MS,
    uploadConcurrency: v.UPLOAD_CONCURRENCY,
    uploadQueueMaxBatches: v.UPLOAD_QUEUE_MAX_BATCHES,
    uploadMaxAttempts: v.UPLOAD_MAX_ATTEMPTS,
    uploadTimeoutMs: v.UPLOAD_TIMEOUT_MS,
    gzipLevel: v.GZIP_LEVEL,
    compression: v.COMPRESSION,
    zstdLevel: v.ZSTD_LEVEL,
    objectKey: v.OBJECT_KEY,
    partitionsMaxOpen: v.PARTITIONS_MAX_OPEN,
    dlqDir: ownDir('dlq') ?? v.DLQ_DIR,
    dlqMaxBytes: v.DLQ_MAX_BYTES,
    dlqMaxFiles: v.DLQ_MAX_FILES,
    dlqTtlSeconds: v.DLQ_TTL_SECONDS ?? (v.ACK_LEVEL === 'memory' ? DLQ_TTL_MEMORY_SECONDS : undefined),
    dlqWhenFull: v.ACK_LEVEL === 'memory' ? 'evict' : 'refuse',
    dlqReuploadIdleMs: v.DLQ_REUPLOAD_IDLE_MS,
    shutdownTimeoutMs: v.SHUTDOWN_TIMEOUT_MS,
    apiKeys: v.API_KEYS,
    corsOrigins: v.CORS_ORIGINS,
    logLevel: v.LOG_LEVEL,
    instanceId,
    ackLevel: v.ACK_LEVEL,
    ackTimeoutMs: v.ACK_TIMEOUT_MS,
    wal: walOf(v, ownDir('wal')),
    emfIntervalMs: v.METRICS_EMF ? v.METRICS_EMF_INTERVAL_MS : undefined,
    workers,
    idempotency: { windowMs: v.IDEMPOTENCY_WINDOW_SECONDS * 1000, maxKeys: v.IDEMPOTENCY_MAX_KEYS },
  };
}

/** Freezes `value` and every object and array within it. */
function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
