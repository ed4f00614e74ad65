// The configuration table: readVariables reads every row from the environment given and nothing
// else, in the table's order (the first bad value is the one refused); the two variables of a form
// of their own (S3_PREFIX, INSTANCE_ID) keep object keys sound; every row is documented.
import t from 'tap';
import { ConfigError } from '../../src/config/parse.js';
import { ACK_LEVELS, LOG_LEVELS, readVariables, SSE_MODES, STORAGE_CLASSES, type Values, VARIABLES } from '../../src/config/table.js';

function refusal(env: Record<string, string>): string {
  try {
    readVariables(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
  return 'accepted';
}

t.test('reads every row, and only the rows: other variables of the environment are not in the values', async (t) => {
  const values = readVariables({ PORT: '9000', HOME: '/root', NOT_A_SETTING: 'x' });
  t.strictSame(Object.keys(values), Object.keys(VARIABLES), 'one value per row, in the table\'s order');
  t.equal(values.PORT, 9000);
  t.notOk('HOME' in values || 'NOT_A_SETTING' in values);
});

t.test('rows are read in the table\'s order: of two bad values the earlier row\'s is refused', async (t) => {
  const names = Object.keys(VARIABLES);
  t.ok(names.indexOf('PORT') < names.indexOf('GZIP_LEVEL') && names.indexOf('GZIP_LEVEL') < names.indexOf('LOG_LEVEL'));
  t.match(refusal({ LOG_LEVEL: 'loud', GZIP_LEVEL: '10', PORT: 'x' }), /^"PORT" /);
  t.match(refusal({ LOG_LEVEL: 'loud', GZIP_LEVEL: '10' }), /^"GZIP_LEVEL" /);
  t.match(refusal({ LOG_LEVEL: 'loud' }), /^"LOG_LEVEL" /);
});

t.test('an empty environment: every default', async (t) => {
  const values: Values = readVariables({});
  t.match(values, { PORT: 8080, HOST: '0.0.0.0', S3_PREFIX: 'raw', ACK_LEVEL: 'memory', LOG_LEVEL: 'info', API_KEYS: [], METRICS_EMF: false });
  t.equal(values.WORKERS, undefined, 'WORKERS: derived by loadConfig');
  t.equal(values.INSTANCE_ID, undefined, 'INSTANCE_ID: derived by loadConfig');
  t.equal(values.S3_BUCKET, undefined, 'no bucket: local mode');
});

t.test('S3_PREFIX: slashes at either end dropped; no empty, "." or ".." segment, as the DLQ re-uploads only such keys', async (t) => {
  for (const [raw, prefix] of [['raw', 'raw'], ['/events/raw/', 'events/raw'], ['//a//', 'a'], ['a.b/..c/.d', 'a.b/..c/.d']]) t.equal(readVariables({ S3_PREFIX: raw }).S3_PREFIX, prefix, raw);
  for (const raw of ['', '/', '///', 'a//b', 'a/./b', '../a', 'a/..']) {
    t.equal(
      refusal({ S3_PREFIX: raw }),
      `"S3_PREFIX" should be a non-empty key prefix whose segments between slashes are neither empty nor "." or "..", such as "raw" or "events/raw", got ${JSON.stringify(raw)}`,
      JSON.stringify(raw),
    );
  }
});

t.test('INSTANCE_ID: 1 to 64 characters that need no escaping in a key; empty is unset', async (t) => {
  t.equal(readVariables({ INSTANCE_ID: 'A-z_0.9' }).INSTANCE_ID, 'A-z_0.9');
  t.equal(readVariables({ INSTANCE_ID: 'x'.repeat(64) }).INSTANCE_ID, 'x'.repeat(64));
  t.equal(readVariables({ INSTANCE_ID: '' }).INSTANCE_ID, undefined);
  for (const raw of ['a b', 'a/b', 'é', 'x'.repeat(65), 'a\n']) t.equal(refusal({ INSTANCE_ID: raw }), `"INSTANCE_ID" should be 1 to 64 characters of A-Z a-z 0-9 . _ -, got "${raw}"`, JSON.stringify(raw));
});

t.test('the enumerations are the values their rows accept', async (t) => {
  for (const level of LOG_LEVELS) t.equal(readVariables({ LOG_LEVEL: level }).LOG_LEVEL, level);
  for (const level of ACK_LEVELS) t.equal(readVariables({ ACK_LEVEL: level }).ACK_LEVEL, level);
  for (const sse of SSE_MODES) t.equal(readVariables({ S3_SSE: sse }).S3_SSE, sse);
  for (const storageClass of STORAGE_CLASSES) t.equal(readVariables({ S3_STORAGE_CLASS: storageClass }).S3_STORAGE_CLASS, storageClass);
  t.equal(VARIABLES.ACK_LEVEL.accepted, '`memory`, `disk`, `s3`');
});

t.test('every row has a default, an accepted column and a one-line doc for docs/config.md', async (t) => {
  for (const [name, variable] of Object.entries(VARIABLES)) {
    t.ok(variable.default.length > 0 && variable.accepted.length > 0, `${name}: default and accepted`);
    t.ok(variable.doc.length > 0 && !variable.doc.includes('\n'), `${name}: one line of doc`);
    t.match(name, /^[A-Z][A-Z0-9_]*$/, `${name}: an environment variable's name`);
  }
});
