// Loading uWebSockets.js's native addon: here it loads, and uWS is the addon itself; where it
// cannot, uwsLoadError says why on one line with what to do (rebind for an old glibc, else
// reinstall on a supported Node), and any use of uWS throws that reason instead of a stack trace
// at import time.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import t, { type Test } from 'tap';
import * as loaded from '../../src/ingest/uws.js';
import { tempDir } from '../helpers/temp.js';

const SOURCE = new URL('../../src/ingest/uws.ts', import.meta.url);

/**
 * A failed load cannot be produced for real in this process: the addon is installed, and loads.
 * So the module's own source is copied beside a node_modules of its own, where the package is
 * `addon` (a CommonJS main file), or missing when undefined; then imported afresh.
 */
async function loadBeside(t: Test, addon: string | undefined): Promise<typeof loaded> {
  const dir = tempDir(t, 'uws');
  writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
  copyFileSync(SOURCE, join(dir, 'uws.ts'));
  if (addon !== undefined) {
    const pkg = join(dir, 'node_modules', 'uWebSockets.js');
    mkdirSync(pkg, { recursive: true });
    writeFileSync(join(pkg, 'package.json'), '{"name":"uWebSockets.js","main":"uws.js"}');
    writeFileSync(join(pkg, 'uws.js'), addon);
  }
  return (await import(pathToFileURL(join(dir, 'uws.ts')).href)) as typeof loaded;
}

t.test('where the addon loads: no error, and uWS is the addon', async (t) => {
  t.equal(loaded.uwsLoadError, undefined);
  t.equal(loaded.uWS, createRequire(import.meta.url)('uWebSockets.js'), 'the package itself, not a stand-in');
  t.type(loaded.uWS.App, 'function');
});

t.test('a glibc too old for the published binaries: the reason on one line, and the rebinding to run', async (t) => {
  // What the package throws on Debian 12: its own sentence, a blank line, then dlopen's message.
  const dlopen = "Error: /app/node_modules/uWebSockets.js/uws_linux_x64_137.node: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.38' not found (required by /app/node_modules/uWebSockets.js/uws_linux_x64_137.node)";
  const { uwsLoadError, uWS } = await loadBeside(t, `throw new Error('This version of uWS.js (v20.57.0) supports only Node.js versions 20, 22, 24 and 25.\\n\\n' + ${JSON.stringify(dlopen)});`);
  t.equal(
    uwsLoadError,
    `the native uWebSockets.js addon did not load, so the server cannot start: This version of uWS.js (v20.57.0) supports only Node.js versions 20, 22, 24 and 25. ${dlopen}. ` +
      'This glibc is older than the one the published binaries are built for: run `npm run uws-compat` (npm ci runs it, unless --ignore-scripts) to rebind their three C23 imports (docs/adr/0001-node24-uwebsockets.md).',
  );
  t.throws(() => uWS.App(), { message: uwsLoadError! }, 'using the addon throws the reason');
  t.throws(() => uWS.us_listen_socket_close, { message: uwsLoadError! }, 'even reading one of its members');
});

t.test('any other failure (no addon for this Node): the reason, and the supported versions', async (t) => {
  const missing = await loadBeside(t, undefined);
  t.match(missing.uwsLoadError, /^the native uWebSockets\.js addon did not load, so the server cannot start: Cannot find (module|package) 'uWebSockets\.js'/);
  t.match(missing.uwsLoadError, /\. Supported: Node\.js 22 and 24 \(see package\.json engines\); reinstall with `npm ci`\.$/);
  t.notMatch(missing.uwsLoadError, /\n/, 'one line');
  t.throws(() => missing.uWS.App(), { message: missing.uwsLoadError! });

  const thrownString = await loadBeside(t, `throw 'This version of uWS.js supports only Node.js LTS versions 20, 22 and 24';`);
  t.equal(
    thrownString.uwsLoadError,
    'the native uWebSockets.js addon did not load, so the server cannot start: This version of uWS.js supports only Node.js LTS versions 20, 22 and 24. Supported: Node.js 22 and 24 (see package.json engines); reinstall with `npm ci`.',
    'a thrown string is the reason as is',
  );
});
