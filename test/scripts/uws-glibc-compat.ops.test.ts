// scripts/uws-glibc-compat.mjs on the published binaries: it rebinds exactly the listed files to
// the listed result, which loads on this machine's glibc; it is idempotent, refuses any other file,
// never leaves a temporary file behind, and does nothing where glibc is 2.38 or later.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import {
  binariesFor,
  compatFile,
  compatNeeded,
  KNOWN_BINARIES,
  rebindC23Imports,
  runtimeGlibc,
  sha256,
  UWS_VERSION,
} from '../../scripts/uws-glibc-compat.mjs';
import { ROOT } from '../helpers/server.js';
import { tempDir } from '../helpers/temp.js';
import { unpackPublished } from '../helpers/uws-published.js';

const SCRIPT = `${ROOT}scripts/uws-glibc-compat.mjs`;
const ours = Object.keys(KNOWN_BINARIES).filter((name) => name.startsWith(`uws_linux_${process.arch}_`));
const published = unpackPublished(t, ours);
const needed = compatNeeded(runtimeGlibc());
const thisAbi = `uws_linux_${process.arch}_${process.versions.modules}.node`;

/** A copy of the published files in a fresh directory, as `npm ci` leaves them. */
function freshCopy(t: Test): string {
  const dir = tempDir(t, 'uws-copy');
  for (const name of ours) copyFileSync(join(published, name), join(dir, name));
  return dir;
}

/** Loads an addon in a child Node process: 'native', or the loader's error. */
function load(path: string): string {
  const child = spawnSync(process.execPath, ['-e', `process.stdout.write(String(require(${JSON.stringify(path)}).App).includes('[native code]') ? 'native' : 'not native')`], { encoding: 'utf8' });
  return child.status === 0 ? child.stdout : child.stderr;
}

t.test('the lockfile installs the version the hash table describes', async (t) => {
  const lock = JSON.parse(readFileSync(`${ROOT}package-lock.json`, 'utf8')) as { packages: Record<string, { version: string }> };
  t.equal(lock.packages['node_modules/uWebSockets.js']!.version, UWS_VERSION, 'update KNOWN_BINARIES with the version');
  for (const name of ours) t.equal(sha256(readFileSync(join(published, name))), KNOWN_BINARIES[name]!.published, `${name} is the published file`);
});

t.test('each published binary of this architecture is rebound to the listed file, changing a few bytes of its symbol and version tables', async (t) => {
  const dir = freshCopy(t);
  for (const name of ours) {
    const path = join(dir, name);
    const before = readFileSync(path);
    t.equal(compatFile(path), 'patched', name);
    const after = readFileSync(path);
    t.equal(sha256(after), KNOWN_BINARIES[name]!.patched);
    t.equal(after.length, before.length, 'same size');
    const changed = before.reduce((n, byte, i) => n + (byte === after[i] ? 0 : 1), 0);
    t.ok(changed > 0 && changed <= 16, `${changed} bytes changed`);
    t.equal(statSync(path).mode, statSync(join(published, name)).mode, 'mode kept');
  }
  t.same(readdirSync(dir).sort(), [...ours].sort(), 'no temporary file left behind');
});

t.test('the rebound addon loads natively on this machine; on glibc < 2.38 the published one does not', { skip: !ours.includes(thisAbi) && `no ${thisAbi} listed` }, async (t) => {
  const dir = freshCopy(t);
  const path = join(dir, thisAbi);
  if (needed) t.match(load(path), /version `GLIBC_2\.38' not found/, 'the published file needs glibc 2.38');
  compatFile(path);
  t.equal(load(path), 'native', `rebound, it loads (glibc ${runtimeGlibc()?.join('.')})`);
});

t.test('idempotent: a rebound file is recognised and left as it is', async (t) => {
  const dir = freshCopy(t);
  const path = join(dir, ours[0]!);
  compatFile(path);
  const { mtimeMs, ino } = statSync(path);
  t.equal(compatFile(path), 'already-patched');
  t.same({ mtimeMs: statSync(path).mtimeMs, ino: statSync(path).ino }, { mtimeMs, ino }, 'not rewritten');
  t.throws(() => rebindC23Imports(readFileSync(path)), { name: 'CompatError', message: /needs no GLIBC_2\.38/ }, 'and there is nothing left to rebind in it');
});

t.test('any other content is refused and left untouched', async (t) => {
  const dir = freshCopy(t);
  const path = join(dir, ours[0]!);
  const bytes = readFileSync(path);
  bytes[bytes.length - 1] ^= 1;
  writeFileSync(path, bytes);
  t.throws(() => compatFile(path), { name: 'CompatError', message: /sha256 [0-9a-f]{64} is not the published uWebSockets\.js .* not touching it/ });
  t.same(readFileSync(path), bytes, 'untouched');
  t.same(readdirSync(dir).sort(), [...ours].sort(), 'no temporary file left behind');
  writeFileSync(join(dir, 'uws_linux_x64_999.node'), 'another version');
  t.equal(compatFile(join(dir, 'uws_linux_x64_999.node')), 'not-listed', 'a file the table does not name is no concern of it');
});

t.test('needed only below glibc 2.38, and never off glibc', async (t) => {
  t.equal(compatNeeded([2, 36]), true);
  t.equal(compatNeeded([2, 37]), true);
  t.equal(compatNeeded([2, 38]), false);
  t.equal(compatNeeded([2, 41]), false);
  t.equal(compatNeeded([3, 0]), false);
  t.equal(compatNeeded(undefined), false, 'musl, macOS, Windows');
});

t.test('the command (postinstall) rebinds a package directory where needed, then has nothing to do', async (t) => {
  const dir = freshCopy(t);
  const run = () => execFileSync(process.execPath, [SCRIPT, dir], { encoding: 'utf8' });
  const first = run();
  if (!needed) {
    t.match(first, /nothing to do \(glibc \d+\.\d+\)/);
    for (const name of ours) t.equal(sha256(readFileSync(join(dir, name))), KNOWN_BINARIES[name]!.published, `${name} as published`);
    return;
  }
  for (const name of ours) t.match(first, `${name}: patched`);
  for (const name of ours) t.match(run(), `${name}: already-patched`);
  writeFileSync(join(dir, ours[0]!), 'not the published file');
  const refused = spawnSync(process.execPath, [SCRIPT, dir], { encoding: 'utf8' });
  t.equal(refused.status, 1, 'a file it does not know fails the install');
  t.match(refused.stderr, /not the published uWebSockets\.js/);
});

t.test('the installed package is loadable as installed (npm ci ran the step)', async (t) => {
  const dir = join(ROOT, 'node_modules', 'uWebSockets.js');
  for (const path of binariesFor(dir)) {
    const known = KNOWN_BINARIES[path.slice(dir.length + 1)]!;
    t.equal(sha256(readFileSync(path)), needed ? known.patched : known.published, path);
  }
});
