// `npm start` as a new user runs it: no S3_BUCKET, an embedded S3 server, an object lands under ./data/s3.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import t from 'tap';
import { baseEnv, eventually, post, ROOT, watch } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';
import { symlinkSync } from 'node:fs';

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

t.test('npm start in local mode says so first, prints a curl line, and stores posted events under ./data/s3', async (t) => {
  // A directory that looks like the checkout, so ./data lands there and not in the repository.
  const dir = tempDir(t, 'local');
  for (const name of ['package.json', 'dist', 'node_modules']) symlinkSync(join(ROOT, name), join(dir, name));
  const npm = spawn('npm', ['start', '--silent'], { cwd: dir, env: baseEnv({ BATCH_MAX_AGE_MS: '200' }), detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    try {
      process.kill(-npm.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  });
  const server = watch(t, npm);
  const listening = await server.waitForLog((l) => l.msg === 'listening');
  t.match(server.logs[0]!.msg, /^LOCAL MODE: S3_BUCKET is not set/, 'the first log line says local mode');
  const tryLine = await server.waitForLog((l) => l.msg.startsWith('LOCAL MODE: send a first event'));
  t.match(tryLine.try, `curl -X POST http://127.0.0.1:${listening.port as number}/v1/events`);
  t.equal(tryLine.metrics, `http://127.0.0.1:${listening.metricsPort as number}/metrics`, 'and where /metrics is: on a port of its own');

  const answer = await post(`http://127.0.0.1:${listening.port as number}/v1/events`, '{"hello":"local"}', { 'content-type': 'application/json' });
  t.equal(answer.status, 202);
  let objects: string[] = [];
  let text = '';
  // s3rver writes the object file as the PUT streams in: wait until it is whole, not just there.
  await eventually(() => {
    objects = filesUnder(join(dir, 'data', 's3')).filter((f) => f.endsWith('.jsonl.gz._S3rver_object'));
    if (objects.length !== 1) return false;
    try {
      text = gunzipSync(readFileSync(objects[0]!)).toString();
      return true;
    } catch {
      return false;
    }
  });
  t.match(objects[0], /data\/s3\/events\/raw\/\d{4}\/\d{2}\/\d{2}\/\d{2}\/\d{13}-.+\.jsonl\.gz\._S3rver_object$/);
  t.match(text, /^\{"received_at":\d{13},"event":\{"hello":"local"\}\}\n$/);
});
