// S3 PutObject with a checksum S3 verifies, one retry layer, and a bounded name for each failure.
import zlib from 'node:zlib';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import pRetry from 'p-retry';
import type { Logger } from 'pino';
import type { ObjectSettings } from '../config.js';
import type { UploadMetrics } from '../metrics/upload.js';
import { codecOfKey, objectHeaders } from './codec.js';
import { AttemptTimeout, errorCode, isRetryable, UploadAborted } from './errors.js';

export interface S3Object {
  readonly key: string;
  /** The body, compressed with the codec its key's extension names. */
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
      ...objectHeaders(codecOfKey(object.key)),
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
          { key: object.key, attempt: attemptNumber, retriesLeft: willRetry ? retriesLeft : 0, willRetry, code: errorCode(error), err: error },
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
