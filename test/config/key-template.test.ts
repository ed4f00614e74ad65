// OBJECT_KEY: a template is checked at start-up with a message naming the setting and what is
// wrong; the default renders today's keys byte for byte; time partitions and key-safe values are
// what the batcher and the keys rely on (hostile values cannot bend a key).
import t from 'tap';
import { ConfigError } from '../../src/config/parse.js';
import { DEFAULT_OBJECT_KEY, HIVE_DEFAULT_PARTITION, keySafe, MAX_VALUE_CHARS, parseKeyTemplate, renderKey, timePartition } from '../../src/config/key-template.js';
import { objectKey } from '../../src/upload/batcher.js';

const refusal = (raw: string): string => {
  try {
    parseKeyTemplate(raw);
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
  return 'accepted';
};

t.test('a bad template is refused naming OBJECT_KEY and the bad part', async (t) => {
  t.equal(refusal('{prefix}/{day}/{batch}'), '"OBJECT_KEY" has an unknown variable {day}: use {prefix} {yyyy} {MM} {dd} {HH} {mm} {instance} {batch} {event.FIELD}, got "{prefix}/{day}/{batch}"');
  t.match(refusal('{prefix}/{yyyy}'), /^"OBJECT_KEY" should hold \{batch\}/);
  t.match(refusal('raw/{batch}'), /^"OBJECT_KEY" should start with \{prefix\}\//);
  t.match(refusal('{prefix}/{event.a}/{event.b}/{batch}'), /should partition by one event field, not 2/);
  t.match(refusal('{prefix}/{event.a.b}/{batch}'), /names a field \{event\.a\.b\}/);
  t.match(refusal('{prefix}/a b/{batch}'), /should hold only variables and the characters/);
  t.match(refusal('{prefix}/{batch'), /unmatched \{ or \}/);
  t.match(refusal('{prefix}/x}/{batch}'), /unmatched \{ or \}/);
  for (const bad of ['{prefix}//{batch}', '{prefix}/../{batch}', '{prefix}/./{batch}', '{prefix}/{batch}/']) t.match(refusal(bad), /no empty, "\." or "\.\." segment/, bad);
  t.equal(refusal('{prefix}/dt={yyyy}-{MM}-{dd}/hour={HH}/type={event.type}/{batch}'), 'accepted', 'the Hive example');
  t.equal(refusal('{prefix}/{event.type}/{yyyy}{MM}{dd}/{instance}-{batch}'), 'accepted');
});

t.test('the default template makes the keys objectKey makes, byte for byte, at any time', async (t) => {
  const template = parseKeyTemplate(DEFAULT_OBJECT_KEY);
  for (let i = 0; i < 500; i++) {
    const first = Math.floor(Math.random() * 4_102_444_800_000); // 1970 to 2100
    const id = `${first}-task-abc123-${i.toString(36).padStart(8, '0')}`;
    const ours = `${renderKey(template, { prefix: 'events/raw', instance: 'task', batch: id, first, value: undefined })}.jsonl.gz`;
    if (ours !== objectKey('events/raw', first, id)) t.fail(`${first}: ${ours} vs ${objectKey('events/raw', first, id)}`);
  }
  t.equal(template.field, undefined);
  t.equal(template.finest, 'HH');
});

t.test('the Hive example renders each variable; a missing value is Hive\'s default partition', async (t) => {
  const template = parseKeyTemplate('{prefix}/dt={yyyy}-{MM}-{dd}/hour={HH}/min={mm}/type={event.type}/{instance}/{batch}');
  const first = Date.UTC(2026, 11, 7, 23, 5, 9);
  t.equal(renderKey(template, { prefix: 'raw', instance: 'i-1', batch: 'B', first, value: 'click' }), 'raw/dt=2026-12-07/hour=23/min=05/type=click/i-1/B');
  t.equal(renderKey(template, { prefix: 'raw', instance: 'i-1', batch: 'B', first, value: undefined }), `raw/dt=2026-12-07/hour=23/min=05/type=${HIVE_DEFAULT_PARTITION}/i-1/B`);
  t.equal(template.field, 'type');
  t.equal(template.finest, 'mm');
});

t.test('time partitions: the same number exactly while the finest variable reads the same', async (t) => {
  const at = (iso: string) => Date.parse(iso);
  const of = (text: string, iso: string) => timePartition(parseKeyTemplate(text), at(iso));
  t.equal(of('{prefix}/{HH}/{batch}', '2026-01-01T10:59:59.999Z'), of('{prefix}/{HH}/{batch}', '2026-01-01T10:00:00.000Z'));
  t.not(of('{prefix}/{HH}/{batch}', '2026-01-01T10:59:59.999Z'), of('{prefix}/{HH}/{batch}', '2026-01-01T11:00:00.000Z'));
  t.not(of('{prefix}/{mm}/{batch}', '2026-01-01T10:01:00Z'), of('{prefix}/{mm}/{batch}', '2026-01-01T10:00:59Z'));
  t.equal(of('{prefix}/{dd}/{batch}', '2026-01-01T00:00:00Z'), of('{prefix}/{dd}/{batch}', '2026-01-01T23:59:59Z'));
  t.not(of('{prefix}/{MM}/{batch}', '2026-01-31T23:59:59Z'), of('{prefix}/{MM}/{batch}', '2026-02-01T00:00:00Z'));
  t.equal(of('{prefix}/{MM}/{batch}', '2026-01-01T00:00:00Z'), of('{prefix}/{MM}/{batch}', '2026-01-31T23:59:59Z'));
  t.not(of('{prefix}/{yyyy}/{batch}', '2026-12-31T23:59:59Z'), of('{prefix}/{yyyy}/{batch}', '2027-01-01T00:00:00Z'));
  t.equal(of('{prefix}/{event.t}/{batch}', '2026-01-01T00:00:00Z'), of('{prefix}/{event.t}/{batch}', '2030-01-01T00:00:00Z'), 'no time variable: one partition');
});

t.test('keySafe: hostile values stay one safe segment piece', async (t) => {
  t.equal(keySafe('click'), 'click');
  t.equal(keySafe('a/b'), 'a%2Fb', 'never a slash');
  t.equal(keySafe('../x'), '..%2Fx');
  t.equal(keySafe('..'), '%2E%2E');
  t.equal(keySafe('.'), '%2E');
  t.equal(keySafe('50%'), '50%25', 'the escape character escaped');
  t.equal(keySafe('é ü'), '%C3%A9%20%C3%BC', 'unicode as UTF-8 bytes');
  t.equal(keySafe('😀'), '%F0%9F%98%80');
  t.equal(keySafe(''), HIVE_DEFAULT_PARTITION);
  t.equal(keySafe(undefined), HIVE_DEFAULT_PARTITION);
  const long = keySafe('x'.repeat(300));
  t.equal(long, 'x'.repeat(MAX_VALUE_CHARS), 'capped');
  const escapes = keySafe('/'.repeat(300));
  t.ok(escapes.length <= MAX_VALUE_CHARS && escapes.length % 3 === 0 && /^(%2F)+$/.test(escapes), 'never cut inside an escape');
  for (const hostile of ['../x', 'a/b', '..', '.', 'x'.repeat(300), '\u0000', '\n', '{batch}']) {
    const safe = keySafe(hostile);
    t.ok(/^[A-Za-z0-9._%-]+$/.test(safe) && safe !== '.' && safe !== '..', JSON.stringify(hostile));
  }
});
