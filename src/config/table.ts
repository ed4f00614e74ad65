// Every environment variable the server reads, one row each: its kind, default, accepted values
// and what it sets. loadConfig (src/config.ts) reads the rows; test/docs.test.ts holds
// docs/config.md's and README.md's tables to them.
import { parseKeyTemplate } from './key-template.js';
import { bool, ConfigError, custom, derivedInt, int, list, oneOf, optionalCustom, optionalInt, optionalOneOf, optionalText, text, url, type Variable } from './parse.js';

const MiB = 1024 * 1024;
const HOUR_MS = 3_600_000;

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const ACK_LEVELS = ['memory', 'disk', 's3'] as const;
/** When a 202 is sent: events in memory, in the fsynced write-ahead log, or in S3 (docs/durability.md). */
export type AckLevel = (typeof ACK_LEVELS)[number];

export const SSE_MODES = ['AES256', 'aws:kms'] as const;
export type SseMode = (typeof SSE_MODES)[number];

// The classes S3 takes on a PutObject.
export const STORAGE_CLASSES = ['STANDARD', 'REDUCED_REDUNDANCY', 'STANDARD_IA', 'ONEZONE_IA', 'INTELLIGENT_TIERING', 'GLACIER', 'GLACIER_IR', 'DEEP_ARCHIVE', 'OUTPOSTS', 'EXPRESS_ONEZONE'] as const;
export type StorageClass = (typeof STORAGE_CLASSES)[number];

/** COMPRESSION: how each object's JSON lines are stored (src/upload/codec.ts). */
export const CODECS = ['gzip', 'zstd', 'none'] as const;
export type Codec = (typeof CODECS)[number];

export const MAX_WORKERS = 256;

/** METRICS_PORT's default, the port the ECS kit maps for Prometheus. */
export const DEFAULT_METRICS_PORT = 8081;
/** METRICS_PORT's value that serves /metrics on PORT instead: an explicit opt-in (anyone who can reach PORT can read it). */
export const METRICS_ON_INGEST_PORT = 'ingest';

/**
 * HTTP_IDLE_TIMEOUT_S's default: above the 60 s an AWS load balancer keeps an idle connection by
 * default, so that the balancer, not the server, closes it (a server closing first races the
 * balancer's next request on it: a 502). A load balancer in front must keep idle connections for
 * less than this (deploy/cdk reads this value).
 */
export const DEFAULT_HTTP_IDLE_TIMEOUT_S = 65;

// METRICS_PORT: a port, or `ingest` for PORT itself; undefined then (Config.metricsPort).
function metricsPort(raw: string, name: string): number | undefined {
  if (raw.trim() === METRICS_ON_INGEST_PORT) return undefined;
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || n > 65535) throw new ConfigError(`"${name}" should be an integer from 0 to 65535, or "${METRICS_ON_INGEST_PORT}" to serve /metrics on PORT, got "${raw}"`);
  return n;
}

// The DLQ re-uploads only keys under S3_PREFIX with no empty, "." or ".." segment (src/dlq/scan.ts,
// keyProblem): a prefix that breaks that rule would send every spilled batch to corrupt/.
function keyPrefix(raw: string, name: string): string {
  const prefix = raw.replace(/^\/+|\/+$/g, '');
  if (prefix === '' || prefix.split('/').some((part) => part === '' || part === '.' || part === '..')) {
    throw new ConfigError(`"${name}" should be a non-empty key prefix whose segments between slashes are neither empty nor "." or "..", such as "raw" or "events/raw", got ${JSON.stringify(raw)}`);
  }
  return prefix;
}

// An instance id goes into object keys, so it is limited to characters that need no escaping.
function instanceId(raw: string, name: string): string {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(raw)) throw new ConfigError(`"${name}" should be 1 to 64 characters of A-Z a-z 0-9 . _ -, got "${raw}"`);
  return raw;
}

// A browser's Origin header is scheme://host[:port], lowercase, with no default port and no path:
// a listed origin written any other way would match no request and refuse every browser POST.
// `https://*.example.com`: any subdomain of example.com (not example.com itself), on that scheme
// and port. Unset or empty: `*` (any origin; the server reads no cookies, so letting browsers read
// its answers exposes nothing: docs/api.md#cors).
const ORIGIN_FORM = 'should be a comma-separated list of origins written as browsers send them, scheme://host[:port] (http or https, lowercase, no path or trailing slash, no default port), `https://*.example.com` for any subdomain, or `*` for any origin';
function corsOrigins(raw: string, name: string): readonly string[] {
  const origins = raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (origins.length === 0) return ['*'];
  for (const origin of origins) {
    if (origin === '*') continue;
    const problem = originProblem(origin);
    if (problem !== '') throw new ConfigError(`"${name}" ${ORIGIN_FORM}, got "${origin}": ${problem}`);
  }
  return origins;
}

function originProblem(origin: string): string {
  // The URL class takes the wildcard label as a host character: checked after parsing.
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return 'not a URL (a scheme such as https:// is needed)';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'it must begin with http:// or https://';
  const host = url.hostname;
  if (host.includes('*') && !/^\*\.[^*]+\.[^*.]+$/.test(host)) return 'a wildcard is only `*.` before a domain of two labels or more, as in https://*.example.com';
  if (url.origin !== origin) return `browsers send it as "${url.origin}"`;
  return '';
}

export const VARIABLES = {
  PORT: int(8080, 0, 65535, 'ingest listener port; 0: any free port'),
  HOST: text('0.0.0.0', 'an address', 'ingest listener address'),
  METRICS_PORT: custom(DEFAULT_METRICS_PORT, `\`${DEFAULT_METRICS_PORT}\``, `0 to 65535, or \`${METRICS_ON_INGEST_PORT}\`; not \`PORT\``, 'a listener of its own for /metrics; `ingest`: /metrics on PORT', metricsPort),
  METRICS_RENDER_INTERVAL_MS: int(1000, 0, 60_000, 'the /metrics page is rendered at most this often; scrapes in between get the last page; 0: at every scrape'),
  HTTP_IDLE_TIMEOUT_S: int(DEFAULT_HTTP_IDLE_TIMEOUT_S, 1, 900, 'the least time an idle keep-alive connection is kept open'),
  S3_BUCKET: optionalText('a bucket name', 'target bucket; unset: local mode', true),
  S3_PREFIX: custom('raw', '`raw`', 'non-empty; no empty, `.` or `..` segment', 'key prefix; slashes at either end are dropped', keyPrefix),
  S3_ENDPOINT: url('an S3-compatible endpoint instead of AWS\'s'),
  S3_FORCE_PATH_STYLE: bool(false, 'path-style addressing, for most S3-compatible servers'),
  S3_SSE: optionalOneOf(SSE_MODES, 'unset', 'server-side encryption asked for on every PUT'),
  S3_SSE_KMS_KEY_ID: optionalText('a KMS key id, ARN or alias', 'the KMS key, with S3_SSE=aws:kms'),
  S3_STORAGE_CLASS: optionalOneOf(STORAGE_CLASSES, 'unset', 'storage class of every object written'),
  MAX_BODY_BYTES: int(MiB, 1, 256 * MiB, 'per request, on the wire and after gunzip'),
  MAX_EVENTS_PER_REQUEST: int(1000, 1, 1_000_000, 'events in one request'),
  MAX_EVENT_DEPTH: int(64, 1, 100_000, 'nesting of objects and arrays within one event'),
  MAX_BODIES_IN_FLIGHT_BYTES: int(32 * MiB, 1024, 64 * 1024 * MiB, 'capacity of the buffers of all request bodies being read at once'),
  MAX_CONNECTIONS: optionalInt('unset: sized to the fd limit', 1, 10_000_000, 'open client connections on the ingest port'),
  WORKERS: derivedInt('the cores the container may use', 1, MAX_WORKERS, 'threads of the HTTP front; 1: the main thread alone'),
  CHANNEL_MAX_EVENTS: int(100_000, 1, 100_000_000, 'event channel bound, in events'),
  CHANNEL_MAX_BYTES: int(64 * MiB, 1024, 64 * 1024 * MiB, 'event channel bound, in bytes held'),
  BATCH_MAX_EVENTS: int(5000, 1, 10_000_000, 'cut a batch at this many events'),
  BATCH_MAX_BYTES: int(8 * MiB, 1024, 1024 * MiB, 'cut before a batch\'s JSON lines pass this'),
  BATCH_MAX_AGE_MS: int(5000, 10, HOUR_MS, 'cut a batch this long after its first event'),
  UPLOAD_CONCURRENCY: int(4, 1, 256, 'PutObject requests in flight'),
  UPLOAD_QUEUE_MAX_BATCHES: int(8, 1, 10_000, 'cut batches waiting for an upload slot'),
  UPLOAD_MAX_ATTEMPTS: int(3, 1, 100, 'attempts per batch before it goes to the DLQ'),
  UPLOAD_TIMEOUT_MS: int(10_000, 100, 600_000, 'per attempt; the request is aborted then'),
  GZIP_LEVEL: int(6, 1, 9, 'gzip level of every object'),
  COMPRESSION: oneOf(CODECS, 'gzip', 'codec of every object; the key\'s extension follows it (`.jsonl.gz`, `.jsonl.zst`, `.jsonl`)'),
  ZSTD_LEVEL: int(1, 1, 19, 'zstd level of every object, with COMPRESSION=zstd'),
  OBJECT_KEY: optionalCustom('unset: `{prefix}/{yyyy}/{MM}/{dd}/{HH}/{batch}`, the hour of the first event', 'a template starting `{prefix}/`, holding `{batch}`', 'each object\'s key without its extension', parseKeyTemplate),
  PARTITIONS_MAX_OPEN: int(64, 1, 100_000, 'with `{event.FIELD}` in OBJECT_KEY: batches open at once, one per value'),
  DLQ_DIR: text('./data/dlq', 'a directory', 'dead-letter queue directory'),
  DLQ_MAX_BYTES: int(1024 * MiB, 1024, Number.MAX_SAFE_INTEGER, 'DLQ capacity in bytes; when full, the oldest files go first (memory) or new events are refused (disk, s3)'),
  DLQ_MAX_FILES: int(10_000, 1, 10_000_000, 'DLQ capacity in files'),
  DLQ_TTL_SECONDS: optionalInt('259200 (3 days) at ACK_LEVEL=memory; never at disk and s3', 1, 10 * 365 * 86_400, 'DLQ files older than this are deleted (at disk and s3: acknowledged events, so only when set)'),
  DLQ_REUPLOAD_IDLE_MS: int(1000, 0, HOUR_MS, 'idle time of the upload loop before a DLQ re-upload'),
  ACK_LEVEL: oneOf(ACK_LEVELS, 'memory', 'when a 202 is sent: events in memory, in the write-ahead log, or in S3'),
  ACK_TIMEOUT_MS: int(30_000, 100, HOUR_MS, 'with ACK_LEVEL=s3: the longest a request waits for its events to be stored; then 503 ack_timeout'),
  WAL_DIR: text('./data/wal', 'a directory', 'write-ahead log directory, with ACK_LEVEL=disk'),
  WAL_MAX_BYTES: int(1024 * MiB, MiB, Number.MAX_SAFE_INTEGER, 'write-ahead log capacity'),
  WAL_SYNC_INTERVAL_MS: int(2, 0, 1000, 'group commit window: requests in it share one fsync'),
  WAL_SYNC_BYTES: int(MiB, 1024, 1024 * MiB, 'group commit: write at once past this many bytes waiting'),
  WAL_SEGMENT_BYTES: int(16 * MiB, 64 * 1024, 1024 * MiB, 'start a new write-ahead log segment past this size'),
  DURABLE_ROOT: optionalText('a directory', 'a volume shared by every instance (EFS); WAL_DIR and DLQ_DIR become ROOT/<instance>/wal and dlq', true),
  DURABLE_LEASE_STALE_MS: int(60_000, 1000, HOUR_MS, 'with DURABLE_ROOT: a lease not renewed this long marks its instance dead'),
  IDEMPOTENCY_WINDOW_SECONDS: int(600, 1, 86_400, 'how long a request with an Idempotency-Key is remembered: a repeat within it gets the first answer and stores nothing'),
  IDEMPOTENCY_MAX_KEYS: int(1_000_000, 1, 100_000_000, 'Idempotency-Key keys held at most (about 170 bytes each for a 36-character key); past it the oldest is forgotten'),
  SHUTDOWN_TIMEOUT_MS: int(25_000, 0, HOUR_MS, 'upload time at shutdown before spilling to the DLQ'),
  API_KEYS: list('comma-separated', 'when set, every POST needs one'),
  CORS_ORIGINS: custom(['*'], '`*`', 'comma-separated origins as browsers send them, `https://*.example.com` forms, or `*`', 'browser origins that may post and read the answers; `*`: any', corsOrigins),
  LOG_LEVEL: oneOf(LOG_LEVELS, 'info', 'pino level'),
  INSTANCE_ID: optionalCustom('on ECS the container\'s DockerId, else the hostname', '1 to 64 of `A-Z a-z 0-9 . _ -`', 'goes into every object key; must differ between instances', instanceId),
  METRICS_EMF: bool(false, 'also write key metrics as CloudWatch Embedded Metric Format lines to stdout'),
  METRICS_EMF_INTERVAL_MS: int(60_000, 1000, HOUR_MS, 'how often, with METRICS_EMF=true'),
} satisfies Record<string, Variable<unknown>>;

/** Every variable's value, as its row reads it. */
export type Values = { readonly [Name in keyof typeof VARIABLES]: ReturnType<(typeof VARIABLES)[Name]['read']> };

/** Reads every row from `env`, in the table's order: the first bad value throws. */
export function readVariables(env: NodeJS.ProcessEnv): Values {
  const values: Record<string, unknown> = {};
  for (const [name, variable] of Object.entries(VARIABLES)) values[name] = (variable as Variable<unknown>).read(name, env[name]);
  return values as Values;
}
