// Which S3 failures are retried, and the bounded name each gets in s3_put_errors_total.
import { isServerError, isThrottlingError, isTransientError } from '@smithy/core/retry';
import { FD_CODES, KNOWN_CODES, NETWORK_CODES } from '../metrics/s3-codes.js';

export class AttemptTimeout extends Error {
  override name = 'AttemptTimeout';
}

/** The reason to abort uploads with: not retried, counted as `Aborted`. */
export class UploadAborted extends Error {
  override name = 'UploadAborted';
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

/** The HTTP status S3 answered with, when `error` is its answer. */
export function httpStatus(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
}

/** A label from a small fixed set, so a flood of odd errors cannot blow up the metric's series. */
export function errorCode(error: unknown): string {
  if (error instanceof AttemptTimeout) return 'Timeout';
  if (error instanceof UploadAborted) return 'Aborted';
  const e = error as { name?: string; code?: string };
  if (e.name !== undefined && KNOWN_CODES.has(e.name)) return e.name;
  const status = httpStatus(error);
  if (status !== undefined) return status >= 500 ? 'Other5xx' : status >= 400 ? 'Other4xx' : 'OtherHttp';
  if (e.code !== undefined && (NETWORK_CODES.has(e.code) || FD_CODES.has(e.code))) return e.code;
  return 'Other';
}
