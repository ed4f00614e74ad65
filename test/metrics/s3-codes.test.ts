// The bounded values of s3_put_errors_total's `code` label: every set the classifier names a
// failure from is in ERROR_CODES (so each series exists from the start), with no label twice,
// and the alert's access codes are S3 codes the classifier names as such.
import t from 'tap';
import { ACCESS_CODES, ERROR_CODES, FD_CODES, KNOWN_CODES, NETWORK_CODES } from '../../src/metrics/s3-codes.js';

t.test('ERROR_CODES: every known S3 code, network code and descriptor code, and the fallbacks, once each', async (t) => {
  const all = new Set(ERROR_CODES);
  t.equal(all.size, ERROR_CODES.length, 'no label twice');
  for (const code of [...KNOWN_CODES, ...NETWORK_CODES, ...FD_CODES]) t.ok(all.has(code), code);
  for (const fallback of ['Timeout', 'Aborted', 'Other5xx', 'Other4xx', 'OtherHttp', 'Other']) t.ok(all.has(fallback), fallback);
  t.equal(ERROR_CODES.length, KNOWN_CODES.size + NETWORK_CODES.size + FD_CODES.size + 6, 'and nothing else: the series stay bounded');
});

t.test('the sets do not overlap: each failure has one label', async (t) => {
  const overlap = (a: Set<string>, b: Set<string>) => [...a].filter((code) => b.has(code));
  t.strictSame(overlap(KNOWN_CODES, NETWORK_CODES), []);
  t.strictSame(overlap(KNOWN_CODES, FD_CODES), []);
  t.strictSame(overlap(NETWORK_CODES, FD_CODES), []);
});

t.test('ACCESS_CODES, the IngestS3AccessDenied alert\'s: S3 codes of refusals retrying cannot fix', async (t) => {
  for (const code of ACCESS_CODES) t.ok(KNOWN_CODES.has(code), `${code} is a known code, exported from the start`);
  t.ok(ACCESS_CODES.includes('AccessDenied'));
  for (const transient of ['SlowDown', 'ServiceUnavailable', 'InternalError', 'RequestTimeout', 'TimeoutError']) t.notOk(ACCESS_CODES.includes(transient), `${transient} is not an access refusal`);
});
