// deploy/athena/: each table's partition projection finds the objects the server writes. For each
// DDL, the OBJECT_KEY its header names (the documented one) makes keys at sample times and values,
// and the projection's storage.location.template, filled in as Athena fills it for the partition
// those keys hold, must be the folder of each key: exactly the key without `{batch}` and its
// extension. No Athena needed: projection is a text substitution of the properties checked here.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { DEFAULT_OBJECT_KEY, keySafe, parseKeyTemplate, renderKey } from '../../src/config/key-template.js';
import { objectKey } from '../../src/upload/batcher.js';
import { ROOT } from '../helpers/server.js';

const read = (path: string) => readFileSync(`${ROOT}${path}`, 'utf8');

interface Table {
  objectKey: string;
  columns: string[];
  location: string;
  properties: Map<string, string>;
}

function table(path: string): Table {
  const sql = read(path);
  const objectKey = /^--\s+OBJECT_KEY=(\S+)$/m.exec(sql)![1]!;
  const create = sql.slice(sql.indexOf('CREATE EXTERNAL TABLE'), sql.indexOf(');', sql.indexOf('TBLPROPERTIES')));
  const columns = /PARTITIONED BY \(([^)]*)\)/.exec(create)![1]!.split(',').map((c) => c.trim().split(/\s+/)[0]!);
  const location = /^LOCATION '([^']+)'$/m.exec(create)![1]!;
  const properties = new Map([...create.matchAll(/^\s+'([^']+)' = '([^']*)',?$/gm)].map((m) => [m[1]!, m[2]!]));
  return { objectKey, columns, location, properties };
}

/** A time as a Java date format (the subset projection formats here use) writes it, in UTC. */
function javaFormat(format: string, ms: number): string {
  const iso = new Date(ms).toISOString();
  const parts: Record<string, string> = { yyyy: iso.slice(0, 4), MM: iso.slice(5, 7), dd: iso.slice(8, 10), HH: iso.slice(11, 13) };
  return format.replace(/yyyy|MM|dd|HH/g, (p) => parts[p]!);
}

/** The value projection gives column `column` for the partition holding an object of these. */
function projected(props: Map<string, string>, column: string, ms: number, value: string): string {
  const type = props.get(`projection.${column}.type`);
  if (type === 'date') return javaFormat(props.get(`projection.${column}.format`)!, ms);
  if (type === 'integer') return String(new Date(ms).getUTCHours()).padStart(Number(props.get(`projection.${column}.digits`)), '0');
  if (type === 'injected') return value;
  throw new Error(`projection.${column}.type ${type}`);
}

const TIMES = [Date.UTC(2026, 0, 1, 0, 0, 0), Date.UTC(2026, 11, 7, 23, 59, 59, 999), Date.UTC(2030, 5, 15, 9, 30)];
const VALUES = ['click', 'a/b', '../x', 'é', undefined];

for (const [path, extension] of [['deploy/athena/default-layout.sql', '.jsonl.gz'], ['deploy/athena/hive-layout.sql', '.jsonl.zst']] as const) {
  t.test(`${path}: the projection's location template is the folder of every key OBJECT_KEY makes`, async (t) => {
    const { objectKey: text, columns, location, properties } = table(path);
    const template = parseKeyTemplate(text);
    t.equal(properties.get('projection.enabled'), 'true');
    const locationTemplate = properties.get('storage.location.template')!;
    t.ok(locationTemplate.startsWith(location), 'under the table\'s LOCATION');
    t.same([...locationTemplate.matchAll(/\$\{(\w+)\}/g)].map((m) => m[1]).sort(), [...columns].sort(), 'every partition column in the template, and no other');
    const prefix = /^s3:\/\/[^/]+\/(.+)\/$/.exec(location)![1]!;
    for (const first of TIMES) {
      for (const raw of VALUES) {
        const value = keySafe(raw);
        const id = `${first}-i-1-abcdef-00000000`;
        const key = path.includes('default')
          ? objectKey(prefix, first, id)
          : `${renderKey(template, { prefix, instance: 'i-1', batch: id, first, value })}${extension}`;
        let folder = locationTemplate.replace(/^s3:\/\/[^/]+\//, '');
        for (const column of columns) folder = folder.replace(`\${${column}}`, projected(properties, column, first, value));
        t.equal(key, `${folder}${id}${extension}`, `${new Date(first).toISOString()} ${String(raw)}: ${key}`);
      }
    }
    for (const column of columns.filter((c) => properties.get(`projection.${c}.type`) === 'date')) {
      const [start, end] = properties.get(`projection.${column}.range`)!.split(',');
      t.equal(end, 'NOW');
      t.equal(start, javaFormat(properties.get(`projection.${column}.format`)!, Date.UTC(2026, 0, 1)), 'the range starts in the projection\'s own format');
    }
  });
}

t.test('the DDLs name the documented templates: the default, and the Hive example of docs/querying.md and README.md', async (t) => {
  t.equal(table('deploy/athena/default-layout.sql').objectKey, DEFAULT_OBJECT_KEY);
  const hive = table('deploy/athena/hive-layout.sql').objectKey;
  t.ok(read('docs/querying.md').includes(`OBJECT_KEY=${hive}`), 'docs/querying.md shows it');
  t.ok(read('README.md').includes(`OBJECT_KEY=${hive}`), 'README.md shows it');
});
