// The S3 preflight at start-up: one small PUT of `<S3_PREFIX>/_preflight` with the encryption and
// storage class settings, so a wrong credential, bucket, prefix permission, bucket policy or KMS
// grant shows in one log line at start rather than as the first batch's failure. HeadBucket would
// be cheaper but proves none of the last four (and needs s3:ListBucket, which the task role does
// not have). The result is only reported: the server serves either way, so an S3 blip at a
// deploy never fails readiness fleet-wide; batches spill to the DLQ while S3 refuses them.
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { Logger } from 'pino';
import type { ObjectSettings } from '../config.js';
import { errorCode } from './errors.js';

export interface PreflightOptions {
  readonly bucket: string;
  readonly prefix: string;
  readonly object: ObjectSettings;
  readonly timeoutMs: number;
  /** Written into the marker, to tell which process wrote it last. */
  readonly instanceId: string;
  readonly version: string;
}

/** Resolves true once the marker is written, false (after logging why) if S3 refused it or `signal` aborted. */
export async function preflightS3(client: S3Client, options: PreflightOptions, log: Logger, signal: AbortSignal): Promise<boolean> {
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
    if (signal.aborted) return false; // shutting down: not S3's fault
    // The SDK rejects an aborted request with its own AbortError, whatever the reason.
    const code = timeout.aborted ? 'Timeout' : errorCode(err);
    const failure = timeout.aborted ? { reason: `no answer within UPLOAD_TIMEOUT_MS (${options.timeoutMs} ms)` } : { err };
    log.error(
      { bucket: options.bucket, key, where, code, ...failure },
      'S3 preflight failed; serving anyway: batches spill to the DLQ until S3 takes PUTs; check the credentials (task role), S3_BUCKET and AWS_REGION, s3:PutObject on S3_PREFIX, the bucket policy, and with S3_SSE=aws:kms kms:GenerateDataKey on the key',
    );
    return false;
  }
  log.info({ bucket: options.bucket, key, where }, 'S3 preflight ok');
  return true;
}
