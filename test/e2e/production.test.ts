// A production install has no dev dependencies: without S3_BUCKET it must refuse to start, not limp along.
import { mkdirSync, readdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { baseEnv, ROOT, watch } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';
import { spawn } from 'node:child_process';

t.test('without s3rver installed and without S3_BUCKET, the server exits 1 and says to set S3_BUCKET', async (t) => {
  // node_modules as a production install would have it, as far as local mode can tell: every package but s3rver.
  const dir = tempDir(t, 'prod');
  mkdirSync(join(dir, 'node_modules'));
  for (const name of readdirSync(join(ROOT, 'node_modules'))) {
    if (name !== 's3rver' && !name.startsWith('.')) symlinkSync(join(ROOT, 'node_modules', name), join(dir, 'node_modules', name));
  }
  symlinkSync(join(ROOT, 'dist'), join(dir, 'dist'));
  symlinkSync(join(ROOT, 'package.json'), join(dir, 'package.json'));
  // Resolve modules from the symlinks' own places, so the real node_modules (with s3rver) is not seen.
  const child = spawn(process.execPath, ['--preserve-symlinks', '--preserve-symlinks-main', join(dir, 'dist', 'main.js')], {
    cwd: dir,
    env: baseEnv({}),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const server = watch(t, child);
  const exit = await server.exited;
  t.equal(exit.code, 1);
  t.match(server.stderr(), /S3_BUCKET is not set, and local mode needs the dev dependency s3rver, which is not installed.*set S3_BUCKET/);
});
