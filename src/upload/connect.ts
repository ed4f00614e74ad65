// Where batches go: the configured bucket, or in local mode an embedded S3 server on loopback.
// Shared by the server and the dlq command, so both write to the same place.
import type { S3Client } from '@aws-sdk/client-s3';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { LOCAL_BUCKET, LOCAL_CREDENTIALS, type LocalS3, startLocalS3 } from '../local-s3.js';
import type { UploadMetrics } from '../metrics/upload.js';
import { createS3Client, S3Uploader } from './s3.js';

export const LOCAL_DATA_DIR = 'data/s3';

export interface S3Target {
  readonly client: S3Client;
  readonly bucket: string;
  readonly local: LocalS3 | undefined;
}

export class NoRegion extends Error {}

/** Starts local mode when S3_BUCKET is unset; throws LocalModeUnavailable or NoRegion. */
export async function connectS3(config: Config): Promise<S3Target> {
  const local = config.s3.bucket === undefined ? await startLocalS3(LOCAL_DATA_DIR) : undefined;
  const client = createS3Client(
    local === undefined
      ? config.s3
      : { endpoint: local.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: LOCAL_CREDENTIALS },
  );
  try {
    await client.config.region();
  } catch {
    await local?.close();
    throw new NoRegion('no AWS region: set AWS_REGION (ECS sets it for tasks)');
  }
  return { client, bucket: config.s3.bucket ?? LOCAL_BUCKET, local };
}

/** The uploader for `target`, with the configured object settings, attempts and timeout per attempt. */
export function uploaderFor(target: S3Target, config: Config, metrics: UploadMetrics, log: Logger): S3Uploader {
  return new S3Uploader(target.client, { bucket: target.bucket, object: config.s3.object, maxAttempts: config.uploadMaxAttempts, timeoutMs: config.uploadTimeoutMs }, metrics, log);
}
