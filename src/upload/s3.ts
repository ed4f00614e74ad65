// S3 PutObject with a checksum S3 verifies, one retry layer, and a bounded name for each failure.
import zlib from 'node:zlib';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { isServerError, isThrottlingError, isTransientError } from '@smithy/core/retry';
import pRetry from 'p-retry';
import type { Logger } from 'pino';
import type { ObjectSettings } from '../config.js';
import type { UploadMetrics } from '../metrics/upload.js';

export interface S3Object {
  readonly key: string;
  /** The gzip body. */
  readonly body: Buffer;
  readonly events: number;
}

export interface UploaderOptions {
  readonly bucket: string;
  /** Encryption and storage class for every PUT; none: the bucket's defaults. */
  readonly object?: ObjectSettings;
  readonly maxAttempts: number;
  readonly timeoutMs: number;
}

// Backoff between attempts: 200 ms doubling, capped at 5 s, each randomised up to 2x (p-retry).
const BACKOFF = { factor: 2, minTimeout: 200, maxTimeout: 5000, randomize: true } as const;

// S3 error codes worth telling apart on a dashboard; anything else is folded into a class.
const KNOWN_CODES = new Set([
  'AccessDenied', 'AllAccessDisabled', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken',
  'InvalidToken', 'RequestTimeTooSkewed', 'NoSuchBucket', 'InvalidBucketName', 'PermanentRedirect',
  'SlowDown', 'ServiceUnavailable', 'InternalError', 'RequestTimeout', 'BadDigest', 'InvalidDigest',
  'XAmzContentChecksumMismatch', 'EntityTooLarge', 'KMS.ThrottlingException', 'TimeoutError',
]);
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);
// Out of file descriptors (the process's or the system's): passes once other sockets or files close.
const FD_CODES = new Set(['EMFILE', 'ENFILE']);
/** Refusals retrying cannot fix (IAM, credentials, bucket): the alert IngestS3AccessDenied's codes. */
export const ACCESS_CODES: readonly string[] = [
  'AccessDenied', 'AllAccessDisabled', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken', 'InvalidToken', 'NoSuchBucket',
];
/** Every value errorCode() can return: s3_put_errors_total exports each at 0 from the start. */
export const ERROR_CODES: readonly string[] = [
  ...KNOWN_CODES, ...NETWORK_CODES, ...FD_CODES, 'Timeout', 'Aborted', 'Other5xx', 'Other4xx', 'OtherHttp', 'Other',
];

class AttemptTimeout extends Error {
  override name = 'AttemptTimeout';
}

/** The reason to abort uploads with: not retried, counted as `Aborted`. */
export class UploadAborted extends Error {
  override name = 'UploadAborted';
}

export class S3Uploader {
  /** Start of the first attempt that failed since the last success; undefined while S3 takes PUTs. */
  #failingSince: number | undefined;
  #lastOkAt = 0;

  constructor(
    private readonly client: S3Client,
    private readonly options: UploaderOptions,
    private readonly metrics: UploadMetrics,
    private readonly log: Logger,
  ) {}

  /**
   * Resolves once S3 has the object; rejects with the last error when attempts run out or fail
   * for good, or at once when `signal` aborts (with an UploadAborted reason).
   *
   * `live: false` (DLQ re-uploads): a failure does not start failingSeconds(), as one file S3 keeps
   * refusing would otherwise page on a task whose live uploads succeed; a success still ends it.
   * `ifAbsent` (`dlq drain`): S3 stores it only where no object is (If-None-Match: *), else 412.
   */
  async put(object: S3Object, signal?: AbortSignal, { live = true, ifAbsent = false }: { live?: boolean; ifAbsent?: boolean } = {}): Promise<void> {
    const checksum = Buffer.alloc(4);
    checksum.writeUInt32BE(zlib.crc32(object.body));
    const command = new PutObjectCommand({
      Bucket: this.options.bucket,
      Key: object.key,
      Body: object.body,
      ContentType: 'application/x-ndjson',
      ContentEncoding: 'gzip',
      ChecksumCRC32: checksum.toString('base64'),
      Metadata: { 'event-count': String(object.events) },
      IfNoneMatch: ifAbsent ? '*' : undefined,
      ServerSideEncryption: this.options.object?.sse,
      SSEKMSKeyId: this.options.object?.sseKmsKeyId,
      StorageClass: this.options.object?.storageClass,
    });
    await pRetry(() => this.#attempt(command, signal, live), {
      ...BACKOFF,
      signal,
      retries: this.options.maxAttempts - 1,
      shouldRetry: ({ error }) => isRetryable(error),
      onFailedAttempt: ({ error, attemptNumber, retriesLeft }) => {
        // p-retry counts the retries left by attempts alone; an error that is never retried has none.
        const willRetry = retriesLeft > 0 && isRetryable(error);
        this.log.warn(
          { key: object.key, attempt: attemptNumber, retriesLeft: willRetry ? retriesLeft : 0, willRetry, code: errorCode(error), err: error.message },
          'S3 put attempt failed',
        );
      },
    });
  }

  /**
   * Seconds live PutObject has been failing without one success (live or re-upload) in between
   * (0: the last attempt that ended succeeded, or only re-uploads failed).
   */
  failingSeconds(now = Date.now()): number {
    return this.#failingSince === undefined ? 0 : (now - this.#failingSince) / 1000;
  }

  async #attempt(command: PutObjectCommand, signal: AbortSignal | undefined, live: boolean): Promise<void> {
    const startedAt = Date.now();
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new AttemptTimeout(`no answer within UPLOAD_TIMEOUT_MS (${this.options.timeoutMs} ms)`)), this.options.timeoutMs);
    const abort = () => controller.abort(signal!.reason);
    signal?.addEventListener('abort', abort, { once: true });
    const stop = this.metrics.putSeconds.startTimer();
    try {
      await this.client.send(command, { abortSignal: controller.signal });
      stop({ result: 'ok' });
      this.#failingSince = undefined;
      this.#lastOkAt = Date.now();
    } catch (err) {
      stop({ result: 'error' });
      const error = controller.signal.aborted ? (controller.signal.reason as Error) : err;
      this.metrics.putErrors.inc({ code: errorCode(error) });
      // Cut by shutdown, not refused by S3. A hung attempt counts from its start (or the last success
      // after it), so a stall reads as long as it has lasted once its first attempt times out.
      if (live && !(error instanceof UploadAborted)) this.#failingSince ??= Math.max(startedAt, this.#lastOkAt);
      throw error;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', abort);
    }
  }
}

/**
 * Throttling (503 SlowDown), 5xx, timeouts, connection errors and a shortage of file descriptors
 * are retried; 4xx such as AccessDenied are not.
 */
export function isRetryable(error: unknown): boolean {
  if (error instanceof AttemptTimeout) return true;
  if (error instanceof UploadAborted) return false;
  if (FD_CODES.has((error as { code?: string }).code ?? '')) return true;
  const e = error as Parameters<typeof isTransientError>[0];
  return isThrottlingError(e) || isTransientError(e) || isServerError(e);
}

/** A label from a small fixed set, so a flood of odd errors cannot blow up the metric's series. */
export function errorCode(error: unknown): string {
  if (error instanceof AttemptTimeout) return 'Timeout';
  if (error instanceof UploadAborted) return 'Aborted';
  const e = error as { name?: string; code?: string; $metadata?: { httpStatusCode?: number } };
  if (e.name !== undefined && KNOWN_CODES.has(e.name)) return e.name;
  const status = e.$metadata?.httpStatusCode;
  if (status !== undefined) return status >= 500 ? 'Other5xx' : status >= 400 ? 'Other4xx' : 'OtherHttp';
  if (e.code !== undefined && (NETWORK_CODES.has(e.code) || FD_CODES.has(e.code))) return e.code;
  return 'Other';
}

export interface ClientOptions {
  readonly endpoint: string | undefined;
  readonly forcePathStyle: boolean;
  readonly region?: string;
  readonly credentials?: { accessKeyId: string; secretAccessKey: string };
}

export function createS3Client(options: ClientOptions): S3Client {
  return new S3Client({
    endpoint: options.endpoint,
    forcePathStyle: options.forcePathStyle,
    region: options.region,
    credentials: options.credentials,
    // Retries live in S3Uploader alone, where each attempt is timed, counted and logged.
    maxAttempts: 1,
  });
}
