// Reading one top-level string field from an event's bytes: what the batcher partitions by and
// what a WAL replay reads again, so both must agree with how JSON readers see the event.
import t from 'tap';
import { HIVE_DEFAULT_PARTITION } from '../../src/config/key-template.js';
import { fieldBytes, partitionOf, topLevelString } from '../../src/upload/partition.js';

const TYPE = fieldBytes('type');
const read = (text: string) => {
  const body = Buffer.from(`xx${text}yy`); // the event in the middle of a body, as the front keeps it
  return topLevelString(body, 2, 2 + Buffer.byteLength(text), TYPE);
};

t.test('the value of the top-level field, wherever it is among the members', async (t) => {
  t.equal(read('{"type":"click"}'), 'click');
  t.equal(read('{ "a" : 1 , "type" : "view" }'), 'view', 'blanks anywhere');
  t.equal(read('{"a":{"type":"nested"},"b":[{"type":"x"},"]}"],"s":"\\"type\\":\\"no\\"","type":"top"}'), 'top', 'nested and quoted look-alikes skipped');
  t.equal(read('{"a":"x\\\\","type":"after-backslash"}'), 'after-backslash', 'a string ending in an escaped backslash');
  t.equal(read('{"a":[1,2,{"b":[3,"}"]}],"n":-1.5e3,"t":true,"z":null,"type":"last"}'), 'last');
});

t.test('escapes decoded; a key spelled with escapes does not match; the last of duplicate keys counts', async (t) => {
  t.equal(read('{"type":"a\\/b\\u00e9\\n"}'), 'a/bé\n');
  t.equal(read('{"t\\u0079pe":"x"}'), undefined);
  t.equal(read('{"type":"first","type":"second"}'), 'second', 'as JSON.parse reads it');
  t.equal(read('{"type":"first","type":7}'), undefined, 'the last one is not a string');
  t.equal(read('{"type":"é😀"}'), 'é😀', 'UTF-8 as is');
});

t.test('missing, not a string, or empty: Hive\'s default partition', async (t) => {
  for (const text of ['{}', '{"other":"x"}', '{"type":1}', '{"type":null}', '{"type":{"a":"b"}}', '{"type":["x"]}', '{"type":""}', '{"typeX":"x"}', '{"typ":"x"}']) {
    const body = Buffer.from(text);
    t.equal(partitionOf(body, 0, body.length, TYPE), HIVE_DEFAULT_PARTITION, text);
  }
  const body = Buffer.from('{"type":"../x"}');
  t.equal(partitionOf(body, 0, body.length, TYPE), '..%2Fx', 'key-safe');
});
