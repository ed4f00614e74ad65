// Proven by a real query engine: servers (in this process) store events under a Hive OBJECT_KEY
// partitioned by {event.type}, one with COMPRESSION=zstd and one with gzip, on a real S3-compatible
// server; the objects are copied to a directory under their keys, as a sync of the bucket would,
// and DuckDB (read_json, hive_partitioning) answers per-type, per-day counts that must match what
// was posted, with every event exactly once and each object holding only the type its key names,
// whatever the type's value (../x, a/b, 300 characters, unicode, a number, null, missing).
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import t from 'tap';
import { MAX_VALUE_CHARS } from '../../src/config/key-template.js';
import { startInProcess } from '../helpers/in-process.js';
import { readObjects, startS3 } from '../helpers/s3.js';
import { tempDir } from '../helpers/temp.js';

const OBJECT_KEY = '{prefix}/dt={yyyy}-{MM}-{dd}/hour={HH}/type={event.type}/{batch}';
const TYPES: unknown[] = ['click', 'view', '../x', 'a/b', 'é ü 😀', 'x'.repeat(300), 7, null, undefined, ''];

interface Row {
  type: string | null;
  dt: string;
  events: string;
  ids: string;
}

t.test('DuckDB over a Hive layout in zstd and gzip: per-type, per-day counts as posted, every event once, each object one type', async (t) => {
  const s3 = await startS3(t);
  const posted = new Map<string, unknown>(); // id -> the type posted (undefined: no member)
  const run = async (codec: string) => {
    // Small batches: each type's events spread over several objects.
    const server = await startInProcess(t, { ...s3.env, S3_PREFIX: `lake/${codec}`, OBJECT_KEY, COMPRESSION: codec, BATCH_MAX_EVENTS: '7', BATCH_MAX_AGE_MS: '3600000' });
    for (let r = 0; r < 12; r++) {
      const events = TYPES.map((type, i) => {
        const id = `${codec}-${r}-${i}`;
        posted.set(id, type);
        return JSON.stringify(type === undefined ? { id } : { id, type, n: r });
      });
      t.equal((await server.post(`[${events.join(',')}]`)).status, 202);
    }
    await server.stop(); // SIGTERM: every open batch is cut and stored
  };
  // DuckDB loads while the servers run.
  const [db] = await Promise.all([DuckDBInstance.create(':memory:'), run('zstd'), run('gzip')]);
  // The bucket, synced to a directory under its keys.
  const root = tempDir(t, 'lake');
  const objects = await readObjects(s3.client);
  for (const object of objects) {
    mkdirSync(dirname(join(root, object.key)), { recursive: true });
    writeFileSync(join(root, object.key), object.gzip);
  }
  t.ok(objects.some((o) => o.key.endsWith('.jsonl.zst')) && objects.some((o) => o.key.endsWith('.jsonl.gz')), 'both codecs stored');

  const connection = await db.connect();
  t.teardown(() => connection.closeSync());
  const source = (codec: string) =>
    `read_json('${root}/lake/${codec}/**/*.jsonl.*', format = 'newline_delimited', hive_partitioning = true, filename = true, columns = {received_at: 'BIGINT', event: 'JSON'})`;
  for (const codec of ['zstd', 'gzip']) {
    const rows = (await connection.runAndReadAll(`
      SELECT type, CAST(dt AS VARCHAR) AS dt, count(*) AS events, string_agg(json_extract_string(event, '$.id'), ',') AS ids
      FROM ${source(codec)} GROUP BY ALL`)).getRowObjectsJson() as unknown as Row[];
    // What was posted, by the partition its type makes (Hive's default partition reads as NULL).
    const expected = new Map<string | null, string[]>();
    for (const [id, type] of posted) {
      if (!id.startsWith(`${codec}-`)) continue;
      const partition = typeof type === 'string' && type !== '' ? type.slice(0, MAX_VALUE_CHARS) : null;
      expected.set(partition, [...(expected.get(partition) ?? []), id]);
    }
    const today = new Set(rows.map((r) => r.dt));
    t.ok(today.size <= 2, `${codec}: one day (two if the run straddled midnight): ${[...today].join(', ')}`);
    const byType = new Map<string | null, string[]>();
    for (const row of rows) byType.set(row.type, [...(byType.get(row.type) ?? []), ...row.ids.split(',')]);
    t.same(new Set(byType.keys()), new Set(expected.keys()), `${codec}: a partition per type, the percent-encoding read back by DuckDB`);
    for (const [type, ids] of expected) t.same([...byType.get(type)!].sort(), [...ids].sort(), `${codec}: type ${JSON.stringify(type)?.slice(0, 30)}: the events posted, each once`);
    t.equal(rows.reduce((n, r) => n + Number(r.events), 0), 12 * TYPES.length, `${codec}: count(*) is what was posted`);

    // Every event lies under its own day and hour, and its object holds only the type its key names.
    const strays = (await connection.runAndReadAll(`
      SELECT filename FROM ${source(codec)}
      WHERE CAST(dt AS VARCHAR) <> strftime(make_timestamp(received_at * 1000), '%Y-%m-%d')
         OR CAST(hour AS INTEGER) <> hour(make_timestamp(received_at * 1000))
         OR type IS DISTINCT FROM (CASE WHEN json_type(event, '$.type') = 'VARCHAR' AND json_extract_string(event, '$.type') <> ''
                                        THEN left(json_extract_string(event, '$.type'), ${MAX_VALUE_CHARS}) END)`)).getRowObjectsJson();
    t.same(strays, [], `${codec}: no event outside its time partition or its type's object`);
    const ids = (await connection.runAndReadAll(`SELECT count(*) AS n, count(DISTINCT json_extract_string(event, '$.id')) AS d FROM ${source(codec)}`)).getRowObjectsJson();
    t.same(ids, [{ n: String(12 * TYPES.length), d: String(12 * TYPES.length) }], `${codec}: exactly once`);
  }
  // Keys no value bent: every object is five segments under its prefix, its value one segment.
  for (const object of objects) t.match(object.key, /^lake\/(zstd|gzip)\/dt=\d{4}-\d\d-\d\d\/hour=\d\d\/type=[A-Za-z0-9._%-]{1,100}\/[^/]+\.jsonl\.(zst|gz)$/);
});
