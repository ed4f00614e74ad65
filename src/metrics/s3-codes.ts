// The bounded values of s3_put_errors_total's `code` label: the metrics export each from the
// start, and the uploader (src/upload/errors.ts) names every failure with one of them.
// S3 error codes worth telling apart on a dashboard; anything else is folded into a class.
export const KNOWN_CODES = new Set([
  'AccessDenied', 'AllAccessDisabled', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken',
  'InvalidToken', 'RequestTimeTooSkewed', 'NoSuchBucket', 'InvalidBucketName', 'PermanentRedirect',
  'SlowDown', 'ServiceUnavailable', 'InternalError', 'RequestTimeout', 'BadDigest', 'InvalidDigest',
  'XAmzContentChecksumMismatch', 'EntityTooLarge', 'KMS.ThrottlingException', 'TimeoutError',
]);
export const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);
// Out of file descriptors (the process's or the system's): passes once other sockets or files close.
export const FD_CODES = new Set(['EMFILE', 'ENFILE']);
/** Refusals retrying cannot fix (IAM, credentials, bucket): the alert IngestS3AccessDenied's codes. */
export const ACCESS_CODES: readonly string[] = [
  'AccessDenied', 'AllAccessDisabled', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken', 'InvalidToken', 'NoSuchBucket',
];
/** Every value errorCode() (src/upload/errors.ts) can return: s3_put_errors_total exports each at 0 from the start. */
export const ERROR_CODES: readonly string[] = [
  ...KNOWN_CODES, ...NETWORK_CODES, ...FD_CODES, 'Timeout', 'Aborted', 'Other5xx', 'Other4xx', 'OtherHttp', 'Other',
];
