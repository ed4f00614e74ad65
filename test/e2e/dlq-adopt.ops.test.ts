// test:ops: a dead instance's DLQ on a shared root (DURABLE_ROOT), drained by the survivor that
// adopts its directory: a real server, real DLQ files, a real S3 server, and the test proxy where S3
// must refuse one key (S3 cannot be made to). In test:ops since the survivor watches the directory
// for a whole stale time first (4 s here); test/wal/adopt.test.ts has the adopter in process.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { writeDlqFile, T0 } from '../helpers/dlq.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { s3Env, startS3 } from '../helpers/s3.js';
import { startServer } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';

t.test('a file S3 refuses in an adopted DLQ is skipped and kept, the files behind it drained, and it pages no one', async (t) => {
  const s3 = await startS3(t);
  const proxy = await startFaultProxy(t, s3);
  const root = tempDir(t, 'root');
  const dead = join(root, 'dead');
  mkdirSync(join(dead, 'dlq'), { recursive: true });
  const keys = [0, 1, 2].map((n) => writeDlqFile(join(dead, 'dlq'), `${T0}-dead-${n}`, [n], undefined, T0 + n));
  // No lease (a clean stop that left DLQ files): judged by the directory, unchanged for the stale
  // time. That is 4 s, not less: at 1 s, a loaded machine that delayed the survivor's renewals by
  // half a second made it fence itself (exit 1) before the adoption was seen.
  proxy.decide = ({ key }) => (key === keys[0] ? { status: 403, code: 'AccessDenied' } : 'pass');
  const server = await startServer(t, { ...s3Env(proxy.endpoint), DURABLE_ROOT: root, INSTANCE_ID: 'survivor', DURABLE_LEASE_STALE_MS: '4000', UPLOAD_MAX_ATTEMPTS: '1' });
  const unfinished = await server.waitForLog((l) => l.msg === 'adopting a directory is not finished; will go on later' && l.dir === dead);
  t.match(unfinished.err, { message: '1 files left in its DLQ' });
  t.same((await s3.objects()).map((o) => o.key).sort(), keys.slice(1), 'on main the drain stopped at the first file and stored nothing');
  t.ok(existsSync(join(dead, 'dlq', `${T0}-dead-0.jsonl.gz`)), 'kept for the next try');
  t.ok(server.logs.some((l) => l.msg === `DLQ → RAW success: ${keys[1]} events=1`), 'each stored file logged as the re-uploader does');
  t.equal(await server.metric('s3_put_failing_seconds'), 0, 'not live: on main the refused file read as S3 failing');
  t.equal(await server.metric('dlq_events_reuploaded_total'), 2);
});
