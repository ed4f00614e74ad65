#!/usr/bin/env node
// Lets the published uWebSockets.js Linux binaries load on glibc 2.36/2.37 (Debian 12, Ubuntu 22.04).
//
// They are built against glibc 2.38 and import three C23 functions that older glibc lacks:
// __isoc23_strtol, __isoc23_strtoul and __isoc23_sscanf (@GLIBC_2.38). These differ from the
// classic strtol/strtoul/sscanf only in also reading a `0b` binary prefix (uWS passes base 10/16
// and "%lu"/"%lx"), so this step rebinds those three imports, and nothing else, to the classic
// functions at glibc's base version, in the ELF dynamic symbol table and version needs:
//   - each symbol's name points at the tail of its own string ("__isoc23_strtol" -> "strtol");
//   - its version index becomes libc's base version (GLIBC_2.2.5 on x64, GLIBC_2.17 on arm64);
//   - the GLIBC_2.38 entry is unlinked from libc.so.6's version needs.
// No byte outside those records changes and the file keeps its size.
//
// Safety: it patches only files whose sha256 is a published one listed below, checks that the
// result has the expected sha256 too, and writes it to a temporary file that is renamed over the
// original (never a half-written binary). A patched file is recognised by its hash (idempotent).
// Where glibc is 2.38 or later, or not Linux/glibc at all, it does nothing: the binaries load as
// published. Run by `npm ci` (postinstall); `npm run uws-compat` runs it by hand (after
// `npm ci --ignore-scripts`, for instance). See docs/adr/0001-node24-uwebsockets.md.
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package version the table below describes; a different version needs a new table. */
export const UWS_VERSION = '20.57.0';

/** sha256 of each published Linux binary of UWS_VERSION, and of the same file once rebound. */
export const KNOWN_BINARIES = {
  'uws_linux_x64_115.node': {
    published: '5b126ee00bf754b02e97e4c27090365a8562c5820c93f93918ac2212d4503e91',
    patched: '7259c4a007296037e965d26658c3187562516d152a23c2babb257e35e8dc1069',
  },
  'uws_linux_x64_127.node': {
    published: '4b55b1f2cb7a7913febbb65a89496412b96af77e838552980092ba6b33723aac',
    patched: 'b1a2a0450dadc0509d1bc2eb0be7f11683da9faa5e4bf7e4a19ffd6e8e183234',
  },
  'uws_linux_x64_137.node': {
    published: '98128405dba2fb608448e921a979530f70c946a2cc9889c15f2fa70c2d00ab05',
    patched: '25b38a1070908df148392cc1ed4a228ea51685a187fcae9e8b4c18c07f6ddbbe',
  },
  'uws_linux_x64_141.node': {
    published: '813d788b347c6fd76b779d8932311ec05a044e612b4b83af220f16e6ea789683',
    patched: 'f501ecbbdff9280fd074bc00c66298e232d44d405037a704cda3f812580ca5fd',
  },
  'uws_linux_arm64_115.node': {
    published: '6bdbc8ff976b4371af1906175e9025804bacc38a414969f4f02314e6b99f206c',
    patched: '25f06a75c990f95bf4bd622d74b9a6b47aa8621e2aa7e9ad3ea745237ff8ee32',
  },
  'uws_linux_arm64_127.node': {
    published: '82b79bd18d1e3563de336156005bd01b7f39fc387b65173d69a29da4ee79f895',
    patched: 'df55f2f3bf81b3610b0dbbb133a87c3a05952fb6e52c2f8c05edb748717efbd2',
  },
  'uws_linux_arm64_137.node': {
    published: '88618b30ddf6b2b62310db89f40a701616676352aac5e0f6184dd8ef876199ce',
    patched: 'f5ef061eab9a46b1d765dc6330866dcce083b09190663a8c971f8989ad325750',
  },
  'uws_linux_arm64_141.node': {
    published: '81d0186dd1549ed6a7f47e68e323573fc27d69d2920527654ce2dd993af2b0ec',
    patched: 'aa6e56ab14f7a02692c55661963293842ca90b51f8be7af8af8314c46fdd6b47',
  },
};

/** The glibc release from which the published binaries load unmodified. */
export const GLIBC_NATIVE = [2, 38];

const C23_PREFIX = '__isoc23_';
const REBOUND = new Set(['__isoc23_strtol', '__isoc23_strtoul', '__isoc23_sscanf']);
const DROPPED_VERSION = 'GLIBC_2.38';
// libc's oldest symbol version on each architecture: strtol, strtoul and sscanf exist there.
const BASE_VERSION = { 62: 'GLIBC_2.2.5', 183: 'GLIBC_2.17' };
const SHT_DYNSYM = 11;
const SHT_GNU_VERNEED = 0x6ffffffe;
const SHT_GNU_VERSYM = 0x6fffffff;

export class CompatError extends Error {
  name = 'CompatError';
}

export const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

/** glibc's version as [major, minor], or undefined off Linux/glibc (musl, macOS, Windows). */
export function runtimeGlibc() {
  if (process.platform !== 'linux') return undefined;
  const version = process.report.getReport().header.glibcVersionRuntime;
  if (typeof version !== 'string') return undefined;
  const [major, minor] = version.split('.').map(Number);
  return [major, minor];
}

/** True where the published binaries need rebinding to load: glibc older than GLIBC_NATIVE. */
export function compatNeeded(glibc) {
  if (glibc === undefined) return false;
  return glibc[0] < GLIBC_NATIVE[0] || (glibc[0] === GLIBC_NATIVE[0] && glibc[1] < GLIBC_NATIVE[1]);
}

/**
 * Rebinds the three C23 imports in an ELF64 little-endian shared object, in place, and returns it.
 * Throws CompatError if the file is not laid out as expected; nothing is guessed.
 */
export function rebindC23Imports(elf) {
  const fail = (why) => {
    throw new CompatError(`cannot rebind the C23 imports: ${why}`);
  };
  if (elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) fail('not a 64-bit little-endian ELF file');
  const base = BASE_VERSION[elf.readUInt16LE(18)];
  if (base === undefined) fail(`unsupported machine ${elf.readUInt16LE(18)}`);
  const shoff = Number(elf.readBigUInt64LE(0x28));
  const shentsize = elf.readUInt16LE(0x3a);
  const sections = Array.from({ length: elf.readUInt16LE(0x3c) }, (_, i) => {
    const at = shoff + i * shentsize;
    return { type: elf.readUInt32LE(at + 4), offset: Number(elf.readBigUInt64LE(at + 24)), size: Number(elf.readBigUInt64LE(at + 32)), link: elf.readUInt32LE(at + 40) };
  });
  const only = (type, name) => {
    const found = sections.filter((s) => s.type === type);
    if (found.length !== 1) fail(`expected one ${name} section, found ${found.length}`);
    return found[0];
  };
  const dynsym = only(SHT_DYNSYM, '.dynsym');
  const versym = only(SHT_GNU_VERSYM, '.gnu.version');
  const verneed = only(SHT_GNU_VERNEED, '.gnu.version_r');
  const dynstr = sections[dynsym.link];
  const str = (offset) => {
    const start = dynstr.offset + offset;
    return elf.toString('latin1', start, elf.indexOf(0, start));
  };

  // libc.so.6's version needs: find the base version's index and the GLIBC_2.38 entry.
  let libc;
  for (let at = verneed.offset; ; ) {
    const next = elf.readUInt32LE(at + 12);
    if (str(elf.readUInt32LE(at + 4)) === 'libc.so.6') libc = at;
    if (next === 0) break;
    at += next;
  }
  if (libc === undefined) fail('no version needs for libc.so.6');
  let baseIndex;
  let dropped;
  let beforeDropped;
  for (let at = libc + elf.readUInt32LE(libc + 8), previous; ; ) {
    const name = str(elf.readUInt32LE(at + 8));
    if (name === base) baseIndex = elf.readUInt16LE(at + 6);
    if (name === DROPPED_VERSION) [dropped, beforeDropped] = [at, previous];
    const next = elf.readUInt32LE(at + 12);
    if (next === 0) break;
    [previous, at] = [at, at + next];
  }
  if (baseIndex === undefined) fail(`libc.so.6 needs no ${base}`);
  if (dropped === undefined) fail(`libc.so.6 needs no ${DROPPED_VERSION}: nothing to rebind`);
  const droppedIndex = elf.readUInt16LE(dropped + 6);

  // Every symbol bound to GLIBC_2.38 must be one of the three, imported (undefined here).
  const symbols = dynsym.size / 24;
  const rebound = [];
  for (let i = 0; i < symbols; i++) {
    if ((elf.readUInt16LE(versym.offset + 2 * i) & 0x7fff) !== droppedIndex) continue;
    const at = dynsym.offset + 24 * i;
    const nameOffset = elf.readUInt32LE(at);
    const name = str(nameOffset);
    if (!REBOUND.has(name)) fail(`${name} also needs ${DROPPED_VERSION}`);
    if (elf.readUInt16LE(at + 6) !== 0) fail(`${name} is defined here, not imported`);
    elf.writeUInt32LE(nameOffset + C23_PREFIX.length, at);
    elf.writeUInt16LE(baseIndex, versym.offset + 2 * i);
    rebound.push(name);
  }
  if (rebound.length === 0) fail(`no symbol uses ${DROPPED_VERSION}`);

  // Unlink GLIBC_2.38 from libc.so.6's list and count one entry fewer.
  const afterDropped = elf.readUInt32LE(dropped + 12);
  if (beforeDropped === undefined) {
    if (afterDropped === 0) fail(`${DROPPED_VERSION} is libc.so.6's only version need`);
    elf.writeUInt32LE(elf.readUInt32LE(libc + 8) + afterDropped, libc + 8);
  } else {
    elf.writeUInt32LE(afterDropped === 0 ? 0 : elf.readUInt32LE(beforeDropped + 12) + afterDropped, beforeDropped + 12);
  }
  elf.writeUInt16LE(elf.readUInt16LE(libc + 2) - 1, libc + 2);
  return elf;
}

/**
 * Makes one binary loadable: 'patched', 'already-patched', or 'not-listed' (a file the table does
 * not name, e.g. another platform's, left alone). Throws CompatError for a listed file whose
 * sha256 is neither the published nor the patched one; the file is then left untouched.
 */
export function compatFile(path) {
  const known = KNOWN_BINARIES[basename(path)];
  if (known === undefined) return 'not-listed';
  const bytes = readFileSync(path);
  const found = sha256(bytes);
  if (found === known.patched) return 'already-patched';
  if (found !== known.published) {
    throw new CompatError(
      `${path}: sha256 ${found} is not the published uWebSockets.js ${UWS_VERSION} file (${known.published}); ` +
        'not touching it. Reinstall (npm ci), or update the table in scripts/uws-glibc-compat.mjs for a new uWebSockets.js version.',
    );
  }
  const patched = rebindC23Imports(Buffer.from(bytes));
  if (sha256(patched) !== known.patched) throw new CompatError(`${path}: the rebound file is not the expected one (sha256 ${sha256(patched)}); not touching it`);
  writeAtomic(path, patched);
  return 'patched';
}

/** The binaries of this platform and architecture (all Node ABIs) in the package directory. */
export function binariesFor(packageDir, platform = process.platform, arch = process.arch) {
  return Object.keys(KNOWN_BINARIES)
    .filter((name) => name.startsWith(`uws_${platform}_${arch}_`))
    .map((name) => join(packageDir, name));
}

function writeAtomic(path, bytes) {
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    const fd = openSync(temp, 'w', statSync(path).mode);
    try {
      writeSync(fd, bytes);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, path);
  } catch (err) {
    rmSync(temp, { force: true });
    throw err;
  }
}

function installedPackageDir() {
  // The package exports only its entry point, so resolve that and take its directory.
  return dirname(createRequire(import.meta.url).resolve('uWebSockets.js'));
}

/** CLI: `node scripts/uws-glibc-compat.mjs [packageDir]`. */
function main(argv) {
  const glibc = runtimeGlibc();
  if (!compatNeeded(glibc)) {
    const where = glibc === undefined ? `${process.platform}, no glibc` : `glibc ${glibc.join('.')}`;
    console.log(`uws-glibc-compat: nothing to do (${where}): uWebSockets.js loads as published`);
    return;
  }
  const packageDir = argv[0] ?? installedPackageDir();
  const files = binariesFor(packageDir);
  if (files.length === 0) throw new CompatError(`no uWebSockets.js ${UWS_VERSION} binary is listed for ${process.platform}-${process.arch}`);
  for (const file of files) {
    console.log(`uws-glibc-compat: ${basename(file)}: ${compatFile(file)} (glibc ${glibc.join('.')})`);
  }
}

if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    main(process.argv.slice(2));
  } catch (err) {
    console.error(`uws-glibc-compat: ${err instanceof CompatError ? err.message : err.stack}`);
    process.exit(1);
  }
}
