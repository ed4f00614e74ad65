// Configuration errors stop the real process with a message naming the variable and the expected form.
import t from 'tap';
import { spawnServer } from './helpers/server.js';

const cases: [Record<string, string>, RegExp][] = [
  [{ BATCH_MAX_EVENTS: 'abc' }, /"BATCH_MAX_EVENTS" should be an integer from 1 to \d+, got "abc"/],
  [{ GZIP_LEVEL: '10' }, /"GZIP_LEVEL" should be an integer from 1 to 9, got "10"/],
  [{ PORT: '-1' }, /"PORT" should be an integer from 0 to 65535, got "-1"/],
  [{ MAX_BODY_BYTES: '1.5' }, /"MAX_BODY_BYTES" should be an integer/],
  [{ S3_FORCE_PATH_STYLE: 'maybe' }, /"S3_FORCE_PATH_STYLE" should be either "true", "false".*, got "maybe"/],
  [{ LOG_LEVEL: 'loud' }, /"LOG_LEVEL" should be one of \[trace, debug, info, warn, error, fatal, silent\], got "loud"/],
  [{ INSTANCE_ID: 'a/b' }, /"INSTANCE_ID" should be 1 to 64 characters/],
  [{ S3_ENDPOINT: 'not a url' }, /"S3_ENDPOINT" should be a valid URL.*, got "not a url"/],
  [{ S3_PREFIX: '/' }, /"S3_PREFIX" should be a non-empty key prefix/],
  // Accepted on main, then every spilled batch went to corrupt/ (its key failed the DLQ's check).
  [{ S3_PREFIX: 'a//b' }, /"S3_PREFIX" should be a non-empty key prefix whose segments between slashes are neither empty nor "\." or "\.\.", such as "raw" or "events\/raw", got "a\/\/b"/],
  [{ S3_PREFIX: 'raw/../x' }, /"S3_PREFIX" should be a non-empty key prefix whose segments .*, got "raw\/\.\.\/x"/],
  [{ S3_PREFIX: '.' }, /"S3_PREFIX" should be a non-empty key prefix whose segments .*, got "\."/],
  [{ MAX_EVENT_DEPTH: '0' }, /"MAX_EVENT_DEPTH" should be an integer from 1 to 100000, got "0"/],
  [{ MAX_BODIES_IN_FLIGHT_BYTES: '1 MiB' }, /"MAX_BODIES_IN_FLIGHT_BYTES" should be an integer from 1024 to \d+, got "1 MiB"/],
  [{ MAX_CONNECTIONS: 'many' }, /"MAX_CONNECTIONS" should be an integer from 1 to \d+, got "many"/],
  [{ S3_BUCKET: 'b' }, /no AWS region: set AWS_REGION/],
  [{ S3_SSE: 'kms' }, /"S3_SSE" should be one of \[AES256, aws:kms\], got "kms"/],
  [{ S3_SSE: 'AES256', S3_SSE_KMS_KEY_ID: 'alias/x' }, /"S3_SSE_KMS_KEY_ID" should be set only with S3_SSE=aws:kms \(it names the KMS key\), got "alias\/x" with S3_SSE "AES256"/],
  [{ S3_SSE_KMS_KEY_ID: 'alias/x' }, /"S3_SSE_KMS_KEY_ID" should be set only with S3_SSE=aws:kms .*, got "alias\/x" with S3_SSE unset/],
  // Was "port in use" at start-up, which names neither variable.
  [{ PORT: '8090', METRICS_PORT: '8090' }, /"METRICS_PORT" should differ from "PORT" \(it serves \/metrics on a port of its own\), got 8090 for both: unset METRICS_PORT to serve \/metrics on PORT/],
  [{ S3_STORAGE_CLASS: 'cheap' }, /"S3_STORAGE_CLASS" should be one of \[STANDARD, .*INTELLIGENT_TIERING.*\], got "cheap"/],
];

for (const [env, message] of cases) {
  t.test(`refuses ${JSON.stringify(env)}`, async (t) => {
    const server = spawnServer(t, { ...env, S3_BUCKET: env.S3_BUCKET ?? 'bucket', AWS_REGION: env.S3_BUCKET ? '' : 'us-east-1' });
    const exit = await server.exited;
    t.equal(exit.code, 1, 'exits 1');
    t.match(server.stderr(), message);
    t.match(server.logs.find((l) => l.level === 'fatal')?.msg, message, 'and logs it as fatal');
  });
}
