// The S3 preflight at start-up: one small PUT of `<S3_PREFIX>/_preflight` with the encryption and
// storage class settings, so a wrong credential, bucket, prefix permission, bucket policy or KMS
// grant shows in one log line at start rather than as the first batch's failure. HeadBucket would
// be cheaper but proves none of the last four (and needs s3:ListBucket, which the task role does
// not have).
//
// A failure is one of two kinds. A refusal of configuration (S3 answered AccessDenied,
// NoSuchBucket, a wrong region's redirect, bad credentials; the endpoint's name does not resolve;
// no credentials at all) cannot pass by itself: the server reports it in /readyz, so that a bad
// revision fails its deployment and is rolled back instead of spilling every batch to DLQs. A
// transient failure (timeouts, refused or reset connections, 5xx, SlowDown) is an S3 outage: the
// server stays ready and spills to the DLQ, or an S3 blip at a deploy would take the whole fleet
// out of its load balancer. Either way the PUT is tried again every `retryMs` until it succeeds,
// so a bucket policy fixed after the start makes the task ready without a restart.
import { setTimeout as sleep } from 'node:timers/promises';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { Logger } from 'pino';
import type { ObjectSettings } from '../config.js';
import { errorCode, httpStatus, isRetryable } from './errors.js';

/** How often a failed preflight is tried again: one PUT per task per interval while S3 refuses it. */
export const PREFLIGHT_RETRY_MS = 30_000;

export interface PreflightOptions {
  readonly bucket: string;
  readonly prefix: string;
  readonly object: ObjectSettings;
  readonly timeoutMs: number;
  /** Written into the marker, to tell which process wrote it last. */
  readonly instanceId: string;
  readonly version: string;
  readonly retryMs: number;
}

/** Why the preflight PUT failed: `code` as s3_put_errors_total names it, and whether the configuration is at fault. */
export interface PreflightFailure {
  readonly code: string;
  readonly configuration: boolean;
  /** Where the marker was to go, `s3://<bucket>/<key>`. */
  readonly where: string;
}

/**
 * Whether retrying cannot fix `err`: S3 answered with a refusal (a 3xx or 4xx that is not
 * throttling nor a timeout), the endpoint's host name does not exist, or no credentials could be
 * found. Anything else (an unknown error too) counts as transient, as before this check existed.
 */
export function isConfigurationError(err: unknown): boolean {
  const { code, name } = err as { code?: string; name?: string };
  // Retried by the uploads (a DNS answer may change), but at start-up it means a wrong S3_ENDPOINT or AWS_REGION.
  if (code === 'ENOTFOUND' || name === 'CredentialsProviderError') return true;
  if (isRetryable(err)) return false;
  const status = httpStatus(err);
  return status !== undefined && status >= 300 && status < 500;
}

/**
 * Runs the preflight now and again every `retryMs` until it succeeds or `signal` aborts it (the
 * shutdown). `report` hears each result: undefined once the marker is written. Logs the first
 * failure, each change of its code, and the success that ends it.
 */
export async function watchS3(client: S3Client, options: PreflightOptions, log: Logger, signal: AbortSignal, report: (failure: PreflightFailure | undefined) => void): Promise<void> {
  let logged: string | undefined;
  while (!signal.aborted) {
    const failure = await putMarker(client, options, log, signal, logged);
    if (signal.aborted) return; // shutting down: not S3's fault
    report(failure);
    if (failure === undefined) return;
    logged = failure.code;
    await sleep(options.retryMs, undefined, { signal }).catch(() => {});
  }
}

/** One PUT of the marker: undefined once S3 took it (logged), else why not (logged unless `logged` is its code already). */
async function putMarker(client: S3Client, options: PreflightOptions, log: Logger, signal: AbortSignal, logged: string | undefined): Promise<PreflightFailure | undefined> {
  // One fixed key, overwritten by every start: no object piles up per task. Hive-style readers
  // (Athena, Spark) skip names starting with `_`, so it never reads as a batch.
  const key = `${options.prefix}/_preflight`;
  const where = `s3://${options.bucket}/${key}`;
  const timeout = AbortSignal.timeout(options.timeoutMs);
  try {
    await client.send(
      new PutObjectCommand({
        Bucket: options.bucket,
        Key: key,
        Body: `event-ingest ${options.version} preflight by ${options.instanceId} at ${new Date().toISOString()}\n`,
        ContentType: 'text/plain',
        ServerSideEncryption: options.object.sse,
        SSEKMSKeyId: options.object.sseKmsKeyId,
        StorageClass: options.object.storageClass,
      }),
      { abortSignal: AbortSignal.any([signal, timeout]) },
    );
  } catch (err) {
    if (signal.aborted) return { code: 'Aborted', configuration: false, where };
    // The SDK rejects an aborted request with its own AbortError, whatever the reason.
    const code = timeout.aborted ? 'Timeout' : errorCode(err);
    const configuration = !timeout.aborted && isConfigurationError(err);
    if (code === logged) return { code, configuration, where };
    const fields = { bucket: options.bucket, key, where, code, retryInMs: options.retryMs, ...(timeout.aborted ? { reason: `no answer within UPLOAD_TIMEOUT_MS (${options.timeoutMs} ms)` } : { err }) };
    if (configuration) {
      log.error(
        fields,
        'S3 preflight failed: S3 refused it for a reason of configuration, so /readyz answers 503 until a retry succeeds; check the credentials (task role), S3_BUCKET, S3_ENDPOINT and AWS_REGION, s3:PutObject on S3_PREFIX, the bucket policy, and with S3_SSE=aws:kms kms:GenerateDataKey on the key',
      );
    } else {
      log.error(fields, 'S3 preflight failed; serving anyway: batches spill to the DLQ until S3 takes PUTs; check S3 and the network path to it (VPC endpoint, NAT, security group)');
    }
    return { code, configuration, where };
  }
  log.info({ bucket: options.bucket, key, where }, 'S3 preflight ok');
  return undefined;
}
