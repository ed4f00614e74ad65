// `dlq drain` never overwrites an object it did not write: the real command on real DLQ files, a
// real S3 server (s3rver), and the test proxy where S3's own refusal (412) must be on the wire.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import t from 'tap';
import { parseKeyTemplate } from '../../src/config/key-template.js';
import type { DlqMeta } from '../../src/dlq/file.js';
import { foreignKey } from '../../src/dlq/guard.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { dlqCommand, T0, writeDlqFile } from '../helpers/dlq.js';
import { BUCKET, s3Env, startS3 } from '../helpers/s3.js';
import { tempDir } from '../helpers/temp.js';

/** The gzip object writeDlqFile wraps for these event ids, byte for byte. */
const objectOf = (ids: number[]) => gzipSync(ids.map((i) => `{"received_at":${T0},"event":{"id":${i}}}\n`).join(''));

const dlqFiles = (dir: string) => readdirSync(dir).filter((n) => n.endsWith('.jsonl.gz'));

t.test('another object at a file\'s key is left alone: the file is kept, the reason printed, exit 1', async (t) => {
  const s3 = await startS3(t);
  const dir = tempDir(t, 'dlq');
  const key = writeDlqFile(dir, `${T0}-task-a-0`, [1, 2]);
  const other = writeDlqFile(dir, `${T0}-task-a-1`, [3]);
  // Written by someone else (say a file crafted to take the key of a stored batch).
  const theirs = gzipSync('{"received_at":0,"event":{"theirs":1}}\n{"received_at":0,"event":{"theirs":2}}\n');
  await s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: theirs, Metadata: { 'event-count': '2' } }));
  const drained = await dlqCommand(['drain'], { ...s3.env, DLQ_DIR: dir });
  t.equal(drained.code, 1);
  t.match(drained.stdout, `kept: ${key} (file ${T0}-task-a-0.jsonl.gz): another object is at its key (event-count 2, ETag "`);
  t.match(drained.stdout, /the file holds 2 events\); not overwritten\n/);
  const stored = await s3.client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  t.ok(Buffer.from(await stored.Body!.transformToByteArray()).equals(theirs), 'theirs, untouched (on main it was overwritten)');
  t.same(dlqFiles(dir), [`${T0}-task-a-0.jsonl.gz`], 'kept; the file behind it drained');
  t.same((await s3.objects()).map((o) => o.key).filter((k) => k !== key), [other]);
  t.match(drained.stdout, /drained 1 files, 1 events; 1 files left/);
});

t.test('the object at the key is this batch (its first PUT was stored, the answer lost): the file is deleted, no PUT', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const dir = tempDir(t, 'dlq');
  const key = writeDlqFile(dir, `${T0}-task-a-0`, [1, 2]);
  await s3.client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: objectOf([1, 2]), Metadata: { 'event-count': '2' } }));
  const drained = await dlqCommand(['drain'], { ...s3Env(proxy.endpoint), DLQ_DIR: dir });
  t.equal(drained.code, 0, drained.stderr);
  t.match(drained.stdout, `DLQ → RAW success: ${key} events=2 (already in S3: not PUT again)\n`);
  t.same(proxy.puts, [], 'not PUT again');
  t.same(dlqFiles(dir), []);
});

t.test('a key that is not the one this server makes for the file, or a name that is no batch id: kept, never uploaded', async (t) => {
  const s3 = await startS3(t);
  const dir = tempDir(t, 'dlq');
  // Under S3_PREFIX, so the server's own check lets them through; the command does not.
  writeDlqFile(dir, `${T0}-task-a-0`, [1], 'raw/2027/01/15/08/reports-that-matter.csv');
  writeDlqFile(dir, `${T0}-task-a-1`, [2], `raw/2027/01/15/09/${T0}-task-a-1.jsonl.gz`); // not the hour of its first event
  writeDlqFile(dir, 'task-a-2', [3]); // no first-event time in front
  const drained = await dlqCommand(['drain'], { ...s3.env, DLQ_DIR: dir });
  t.equal(drained.code, 1);
  t.match(drained.stdout, `kept: raw/2027/01/15/08/reports-that-matter.csv (file ${T0}-task-a-0.jsonl.gz): its key is not the one this server makes for it (raw/2027/01/15/08/${T0}-task-a-0.jsonl.gz); not uploaded`);
  t.match(drained.stdout, `kept: raw/2027/01/15/09/${T0}-task-a-1.jsonl.gz (file ${T0}-task-a-1.jsonl.gz): its key is not the one this server makes for it`);
  t.match(drained.stdout, 'kept: raw/2027/01/15/08/task-a-2.jsonl.gz (file task-a-2.jsonl.gz): its name is not a batch id this server makes');
  t.same(await s3.objects(), []);
  t.equal(dlqFiles(dir).length, 3);
});

t.test('every PUT is conditional (If-None-Match: *); a 412 from S3 (an object the HEAD did not see) keeps the file', async (t) => {
  const s3 = await startS3(t);
  // Injected on the wire: s3rver ignores If-None-Match on a PUT, S3 answers 412 where an object is.
  const proxy = await startFaultProxy(t, s3);
  const dir = tempDir(t, 'dlq');
  const taken = writeDlqFile(dir, `${T0}-task-a-0`, [1]);
  const free = writeDlqFile(dir, `${T0}-task-a-1`, [2]);
  proxy.decide = ({ key }) => (key === taken ? { status: 412, code: 'PreconditionFailed' } : 'pass');
  const drained = await dlqCommand(['drain'], { ...s3Env(proxy.endpoint), DLQ_DIR: dir });
  t.equal(drained.code, 1);
  t.same(proxy.puts.map((p) => [p.key, p.headers['if-none-match']]), [[taken, '*'], [free, '*']]);
  t.match(drained.stdout, `kept: ${taken} (file ${T0}-task-a-0.jsonl.gz): an object is already at its key and could not be checked to be this batch; not overwritten`);
  t.ok(existsSync(join(dir, `${T0}-task-a-0.jsonl.gz`)));
  t.same((await s3.objects()).map((o) => o.key), [free]);
});

t.test('foreignKey: with OBJECT_KEY, the keys its template makes for the file are the server\'s (any instance, any key-safe value, its codec); others stay foreign', async (t) => {
  const template = parseKeyTemplate('{prefix}/dt={yyyy}-{MM}-{dd}/type={event.type}/{instance}/{batch}');
  const first = Date.UTC(2027, 0, 15, 8, 30);
  const id = `${first}-i-1-0badcafe-0-10-0`;
  const meta = (key: string): DlqMeta => ({ v: 1, key, events: 1, firstReceivedAt: first, lastReceivedAt: first, spilledAt: first, crc32: 0 });
  const ok = (key: string, name = `${id}.jsonl.zst`) => foreignKey(name, meta(key), 'raw', template) === undefined;
  t.ok(ok(`raw/dt=2027-01-15/type=click/i-1/${id}.jsonl.zst`));
  t.ok(ok(`raw/dt=2027-01-15/type=a%2Fb/other-task/${id}.jsonl.zst`), 'another instance, an escaped value');
  t.ok(ok(`raw/dt=2027-01-15/type=__HIVE_DEFAULT_PARTITION__/i-1/${id}.jsonl`, `${id}.jsonl.gz`), 'a plain object');
  t.ok(ok(`raw/2027/01/15/08/${id}.jsonl.gz`, `${id}.jsonl.gz`), 'the default layout still');
  t.notOk(ok(`raw/dt=2027-01-16/type=click/i-1/${id}.jsonl.zst`), 'another day than its first event');
  t.notOk(ok(`raw/dt=2027-01-15/type=a/b/i-1/${id}.jsonl.zst`), 'a slash in the value');
  t.notOk(ok(`raw/dt=2027-01-15/type=click/i-1/other-${id}.jsonl.zst`), 'another batch');
  t.notOk(ok(`elsewhere/dt=2027-01-15/type=click/i-1/${id}.jsonl.zst`), 'outside the prefix');
  t.match(foreignKey(`${id}.jsonl.zst`, meta('raw/x'), 'raw', template), /or OBJECT_KEY \{prefix\}\/dt=/);
  t.match(foreignKey(`${id}.jsonl.zst`, meta(`raw/dt=2027-01-15/type=click/i-1/${id}.jsonl.zst`), 'raw'), /not the one this server makes/, 'without OBJECT_KEY: only the default layout');
});
