// The HTTP engine: the suite runs on the native addon, and an addon that does not load stops the
// server with a log line saying why and what to do (this uWebSockets.js has no slow JS fallback).
import { spawn } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { compatNeeded, runtimeGlibc } from '../../scripts/uws-glibc-compat.mjs';
import { startS3 } from '../helpers/s3.js';
import { baseEnv, ROOT, startServer, watch } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';
import { unpackPublished } from '../helpers/uws-published.js';

const ADDON = `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;

t.test(`the native uWebSockets.js addon is loaded on Node ${process.version} (the tests would measure nothing real otherwise)`, async (t) => {
  const s3 = await startS3(t);
  const server = await startServer(t, s3.env);
  const line = await server.waitForLog((l) => typeof l.engine === 'string');
  t.equal(line.engine, 'native', 'the native addon loaded: fix the uWebSockets.js install if this fails');
  t.equal(await server.metric('http_engine_info', '{engine="native"}'), 1);
  t.equal(server.stderr(), '', 'no warning from Node or a dependency on stderr');
});

/**
 * This checkout's build with its own node_modules, where uWebSockets.js's addon for this Node is
 * `addon` (a path to copy); every other dependency is the installed one.
 */
function installWithAddon(t: Test, addon: string): string {
  const app = tempDir(t, 'app');
  cpSync(join(ROOT, 'dist'), join(app, 'dist'), { recursive: true });
  copyFileSync(join(ROOT, 'package.json'), join(app, 'package.json'));
  mkdirSync(join(app, 'node_modules'));
  for (const name of readdirSync(join(ROOT, 'node_modules'))) {
    if (name !== 'uWebSockets.js' && !name.startsWith('.')) symlinkSync(join(ROOT, 'node_modules', name), join(app, 'node_modules', name));
  }
  const uws = join(app, 'node_modules', 'uWebSockets.js');
  mkdirSync(uws);
  for (const file of ['package.json', 'uws.js', 'ESM_wrapper.mjs']) copyFileSync(join(ROOT, 'node_modules', 'uWebSockets.js', file), join(uws, file));
  copyFileSync(addon, join(uws, ADDON));
  return app;
}

async function refusal(t: Test, app: string) {
  const s3 = await startS3(t);
  const proc = watch(t, spawn(process.execPath, [join(app, 'dist', 'main.js')], { cwd: tempDir(t, 'server'), env: baseEnv(s3.env), stdio: ['ignore', 'pipe', 'pipe'] }));
  const exit = await proc.exited;
  t.same(exit, { code: 1, signal: null }, 'the server refuses to start');
  const fatal = proc.logs.find((l) => l.level === 'fatal');
  t.ok(!proc.logs.some((l) => l.msg === 'listening'), 'it never listens');
  t.equal(fatal?.msg, 'cannot start');
  const reason = typeof fatal?.reason === 'string' ? fatal.reason : 'the reason in the fatal log line';
  t.match(proc.stderr(), reason, 'and says it on stderr too');
  return reason;
}

t.test('an addon that does not load stops the server with a fatal log line saying why', async (t) => {
  const app = tempDir(t, 'addon');
  writeFileSync(join(app, ADDON), 'not a shared object');
  const message = await refusal(t, installWithAddon(t, join(app, ADDON)));
  t.match(message, /^HTTP engine: the native uWebSockets\.js addon did not load, so the server cannot start: .*uws_linux_\w+\.node: file too short/);
  t.match(message, /reinstall with `npm ci`/);
});

const glibc = runtimeGlibc();
t.test(
  'the published addon on glibc < 2.38 (npm ci --ignore-scripts) stops the server and names the compatibility step',
  { skip: !compatNeeded(glibc) && `glibc ${glibc?.join('.') ?? 'absent'}: the published addon loads as it is` },
  async (t) => {
    const published = unpackPublished(t, [ADDON]);
    const message = await refusal(t, installWithAddon(t, join(published, ADDON)));
    t.match(message, /version `GLIBC_2\.38' not found/);
    t.match(message, /run `npm run uws-compat`/);
  },
);
