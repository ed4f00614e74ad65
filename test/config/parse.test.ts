// The kinds of variable the configuration table is made of, each alone: what unset, empty and a
// value read as, the one form of every refusal (a ConfigError naming the variable, what it
// expects and what it got), and the default and accepted columns each gives docs/config.md.
import t from 'tap';
import { bool, ConfigError, custom, derivedInt, int, invalid, list, oneOf, optionalCustom, optionalInt, optionalOneOf, optionalText, text, url, type Variable } from '../../src/config/parse.js';

/** The ConfigError's message when `variable` reads `raw` as X, or what it read. */
function read<T>(variable: Variable<T>, raw: string | undefined): T | string {
  try {
    return variable.read('X', raw);
  } catch (err) {
    if (err instanceof ConfigError) return `refused: ${err.message}`;
    throw err;
  }
}

t.test('invalid(): a ConfigError of the form "NAME" expects, got "raw"', async (t) => {
  const err = invalid('GZIP_LEVEL', 'should be small', '10');
  t.type(err, ConfigError);
  t.type(err, Error);
  t.equal(err.message, '"GZIP_LEVEL" should be small, got "10"');
});

t.test('int: unset is the default; a value is an integer within the bounds, blanks around allowed; empty is a bad value', async (t) => {
  const v = int(5, 1, 9, 'doc');
  t.equal(read(v, undefined), 5);
  t.equal(read(v, '1'), 1);
  t.equal(read(v, '9'), 9);
  t.equal(read(v, ' 7 '), 7);
  for (const raw of ['0', '10', '', ' ', '1.5', '-1', '1e1', '0x5', 'five', '+3']) t.equal(read(v, raw), `refused: "X" should be an integer from 1 to 9, got "${raw}"`, JSON.stringify(raw));
  t.strictSame({ default: v.default, accepted: v.accepted, doc: v.doc }, { default: '`5`', accepted: '1 to 9', doc: 'doc' });
  t.equal(int(0, 0, Number.MAX_SAFE_INTEGER, 'd').accepted, '0 and up', 'no upper bound worth writing');
});

t.test('optionalInt: unset or empty is undefined, which its default column explains', async (t) => {
  const v = optionalInt('unset: sized to the fd limit', 1, 100, 'doc');
  t.equal(read(v, undefined), undefined);
  t.equal(read(v, ''), undefined);
  t.equal(read(v, '100'), 100);
  t.equal(read(v, '101'), 'refused: "X" should be an integer from 1 to 100, got "101"');
  t.equal(read(v, ' '), 'refused: "X" should be an integer from 1 to 100, got " "', 'blank is not empty');
  t.strictSame([v.default, v.accepted], ['unset: sized to the fd limit', '1 to 100']);
});

t.test('derivedInt: unset is undefined for the caller to derive; empty is a bad value', async (t) => {
  const v = derivedInt('the cores', 1, 256, 'doc');
  t.equal(read(v, undefined), undefined);
  t.equal(read(v, '256'), 256);
  t.equal(read(v, ''), 'refused: "X" should be an integer from 1 to 256, got ""');
  t.strictSame([v.default, v.accepted], ['the cores', '1 to 256']);
});

t.test('bool: true or false in any case; anything else, empty too, is refused', async (t) => {
  const v = bool(false, 'doc');
  t.equal(read(v, undefined), false);
  t.equal(read(bool(true, 'doc'), undefined), true);
  for (const [raw, value] of [['true', true], ['TRUE', true], ['tRuE', true], ['false', false], ['FALSE', false]] as const) t.equal(read(v, raw), value, raw);
  for (const raw of ['', '1', 'yes', ' true']) t.equal(read(v, raw), `refused: "X" should be either "true", "false", "TRUE", or "FALSE", got "${raw}"`, JSON.stringify(raw));
  t.strictSame([v.default, v.accepted], ['`false`', '`true`, `false`']);
});

t.test('oneOf and optionalOneOf: exactly one of the values, case and all', async (t) => {
  const v = oneOf(['memory', 'disk'] as const, 'memory', 'doc');
  t.equal(read(v, undefined), 'memory');
  t.equal(read(v, 'disk'), 'disk');
  for (const raw of ['DISK', '', ' disk']) t.equal(read(v, raw), `refused: "X" should be one of [memory, disk], got "${raw}"`, JSON.stringify(raw));
  t.strictSame([v.default, v.accepted], ['`memory`', '`memory`, `disk`']);
  const o = optionalOneOf(['AES256', 'aws:kms'] as const, 'unset', 'doc');
  t.equal(read(o, undefined), undefined);
  t.equal(read(o, ''), undefined, 'empty is unset');
  t.equal(read(o, 'aws:kms'), 'aws:kms');
  t.equal(read(o, 'kms'), 'refused: "X" should be one of [AES256, aws:kms], got "kms"');
  t.strictSame([o.default, o.accepted], ['unset', '`AES256`, `aws:kms`']);
});

t.test('text and optionalText: the string as given; optionalText drops empty, and with trim blank too', async (t) => {
  const v = text('0.0.0.0', 'an address', 'doc');
  t.equal(read(v, undefined), '0.0.0.0');
  t.equal(read(v, ' ::1 '), ' ::1 ', 'as given');
  t.equal(read(v, ''), '', 'empty is a value');
  t.strictSame([v.default, v.accepted], ['`0.0.0.0`', 'an address']);
  const kept = optionalText('a key', 'doc');
  t.equal(read(kept, undefined), undefined);
  t.equal(read(kept, ''), undefined);
  t.equal(read(kept, ' k '), ' k ', 'without trim: as given');
  const trimmed = optionalText('a bucket', 'doc', true);
  t.equal(read(trimmed, ' b '), 'b');
  t.equal(read(trimmed, '   '), undefined, 'blank is unset');
  t.strictSame([trimmed.default, trimmed.accepted], ['unset', 'a bucket']);
});

t.test('url: absolute, normalised as the URL class writes it; empty or relative is refused', async (t) => {
  const v = url('doc');
  t.equal(read(v, undefined), undefined);
  t.equal(read(v, 'HTTP://Example.com:9000'), 'http://example.com:9000/');
  for (const raw of ['', '/relative', 'not a url']) t.equal(read(v, raw), `refused: "X" should be a valid URL, got "${raw}"`, JSON.stringify(raw));
  t.strictSame([v.default, v.accepted], ['unset', 'a URL']);
});

t.test('list: comma-separated, blanks and empty entries dropped; unset is empty', async (t) => {
  const v = list('comma-separated', 'doc');
  t.strictSame(read(v, undefined), []);
  t.strictSame(read(v, ''), []);
  t.strictSame(read(v, ' a ,, b,'), ['a', 'b']);
  t.strictSame(read(v, 'a b'), ['a b'], 'blanks inside an entry kept');
  t.strictSame([v.default, v.accepted], ['unset', 'comma-separated']);
});

t.test('custom and optionalCustom: the parse given, with the variable\'s name for its message', async (t) => {
  const even = (raw: string, name: string): number => {
    if (Number(raw) % 2 !== 0) throw new ConfigError(`${name} odd: ${raw}`);
    return Number(raw);
  };
  const v = custom('none', '`none`', 'even numbers', 'doc', even);
  t.equal(read(v, undefined), 'none');
  t.equal(read(v, '4'), 4);
  t.equal(read(v, '3'), 'refused: X odd: 3');
  t.equal(read(v, ''), 0, 'empty goes to the parse, which takes it here');
  t.strictSame([v.default, v.accepted], ['`none`', 'even numbers']);
  const o = optionalCustom('derived', 'even numbers', 'doc', even);
  t.equal(read(o, ''), undefined, 'empty is unset, the parse not asked');
  t.equal(read(o, '3'), 'refused: X odd: 3');
  t.equal(o.default, 'derived');
});
