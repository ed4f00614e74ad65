// The disk layer on real files: atomic writes in the order a crash needs (file fsync, rename,
// directory fsync), no symlink ever followed, EMFILE ridden out, and a failed directory fsync told
// apart from a change not made. Faults a healthy disk cannot produce go in through the fs seam.
import { constants as fsConstants, existsSync, type PathLike, lstatSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { DirNotSynced, Disk, type DiskFs, NotRegular, SymlinkRefused } from '../../src/disk/disk.js';
import { tempDir } from '../helpers/temp.js';

/** The real fs, recording each call that changes or syncs something, in order. */
function recording(): { fs: DiskFs; calls: string[] } {
  const calls: string[] = [];
  const open = (async (file: string, flags: number, mode?: number) => {
    const handle = await fs.open(file, flags, mode);
    const sync = handle.sync.bind(handle);
    handle.sync = async () => {
      calls.push(`fsync ${file}`);
      await sync();
    };
    return handle;
  }) as typeof fs.open;
  const rename = async (from: PathLike, to: PathLike) => {
    calls.push(`rename ${String(from)} -> ${String(to)}`);
    await fs.rename(from, to);
  };
  const unlink = async (file: PathLike) => {
    calls.push(`unlink ${String(file)}`);
    await fs.unlink(file);
  };
  return { fs: { ...fs, open, rename, unlink }, calls };
}

const failing = (code: string) => Object.assign(new Error(`${code}: injected`), { code });

t.test('writeAtomic: the file is fsynced before the rename, the directory after it; no temp file is left', async (t) => {
  const dir = tempDir(t, 'disk');
  const { fs: recorded, calls } = recording();
  await new Disk(recorded).writeAtomic(dir, 'a', 'hello', { temp: '.tmp-a' });
  t.equal(readFileSync(join(dir, 'a'), 'utf8'), 'hello');
  t.same(readdirSync(dir), ['a']);
  t.same(calls, [`fsync ${join(dir, '.tmp-a')}`, `rename ${join(dir, '.tmp-a')} -> ${join(dir, 'a')}`, `fsync ${dir}`]);
});

t.test('writeAtomic never writes through a symlink at the temp name, and leaves the target alone', async (t) => {
  const dir = tempDir(t, 'disk');
  const victim = join(tempDir(t, 'elsewhere'), 'victim');
  writeFileSync(victim, 'keep me');
  symlinkSync(victim, join(dir, '.tmp-a'));
  await t.rejects(new Disk().writeAtomic(dir, 'a', 'evil', { temp: '.tmp-a' }), { code: 'EEXIST' });
  t.equal(readFileSync(victim, 'utf8'), 'keep me');
  t.notOk(existsSync(join(dir, 'a')));
});

t.test('a failed directory fsync after the rename is DirNotSynced: the file is in place', async (t) => {
  const dir = tempDir(t, 'disk');
  const open = (async (file: string, flags: number, mode?: number) => {
    const handle = await fs.open(file, flags, mode);
    if (file === dir) handle.sync = () => Promise.reject(failing('EIO'));
    return handle;
  }) as typeof fs.open;
  const err = await new Disk({ ...fs, open }).writeAtomic(dir, 'a', 'hello', { temp: '.tmp-a' }).catch((e: unknown) => e);
  t.type(err, DirNotSynced);
  t.equal((err as DirNotSynced).code, 'EIO');
  t.equal(readFileSync(join(dir, 'a'), 'utf8'), 'hello');
});

t.test('a failed write removes the temp file and leaves the old file as it was', async (t) => {
  const dir = tempDir(t, 'disk');
  writeFileSync(join(dir, 'a'), 'old');
  const rename = () => Promise.reject(failing('EIO'));
  await t.rejects(new Disk({ ...fs, rename }).writeAtomic(dir, 'a', 'new', { temp: '.tmp-a' }), { code: 'EIO' });
  t.same(readdirSync(dir), ['a']);
  t.equal(readFileSync(join(dir, 'a'), 'utf8'), 'old');
});

t.test('EMFILE and ENFILE are retried with backoff; other errors are not', async (t) => {
  const dir = tempDir(t, 'disk');
  let refusals = 2;
  const opens: number[] = [];
  const open = (async (file: string, flags: number, mode?: number) => {
    opens.push(flags);
    if (refusals-- > 0) throw failing(refusals === 1 ? 'EMFILE' : 'ENFILE');
    return fs.open(file, flags, mode);
  }) as typeof fs.open;
  await new Disk({ ...fs, open }).writeNew(join(dir, 'a'), 'x');
  t.equal(opens.length, 3, 'two refusals, then the open');
  t.ok(opens.every((flags) => (flags & fsConstants.O_NOFOLLOW) !== 0), 'never through a symlink');
  const eacces = (async () => {
    throw failing('EACCES');
  }) as typeof fs.open;
  await t.rejects(new Disk({ ...fs, open: eacces }).writeNew(join(dir, 'b'), 'x'), { code: 'EACCES' });
});

t.test('no symlink is followed: a read is refused, lstat refuses, a subdirectory that is one is refused', async (t) => {
  const dir = tempDir(t, 'disk');
  const elsewhere = tempDir(t, 'elsewhere');
  writeFileSync(join(elsewhere, 'file'), 'secret');
  symlinkSync(join(elsewhere, 'file'), join(dir, 'link'));
  symlinkSync(elsewhere, join(dir, 'sub'));
  const disk = new Disk();
  await t.rejects(disk.readRegular(join(dir, 'link')), NotRegular);
  await t.rejects(disk.readText(join(dir, 'link')), { code: 'ELOOP' });
  await t.rejects(disk.lstat(join(dir, 'link')), SymlinkRefused);
  await t.rejects(disk.subdir(dir, 'sub'), { code: 'ELOOP', message: `${join(dir, 'sub')} is a symbolic link` });
  writeFileSync(join(dir, 'plain'), 'a file');
  await t.rejects(disk.subdir(dir, 'plain'), { code: 'ENOTDIR' });
  t.equal(await disk.subdir(dir, 'made'), join(dir, 'made'));
  t.ok(lstatSync(join(dir, 'made')).isDirectory());
  t.equal(await disk.subdir(dir, 'made'), join(dir, 'made'), 'one already there is fine');
});

t.test('moveInto moves into a real subdirectory, fsyncing both; into a symlinked one it moves nothing', async (t) => {
  const dir = tempDir(t, 'disk');
  const elsewhere = tempDir(t, 'elsewhere');
  mkdirSync(join(dir, 'aside'));
  symlinkSync(elsewhere, join(dir, 'linked'));
  writeFileSync(join(dir, 'a'), 'x');
  writeFileSync(join(dir, 'b'), 'y');
  const { fs: recorded, calls } = recording();
  const disk = new Disk(recorded);
  await disk.moveInto(dir, 'a', 'aside');
  t.ok(existsSync(join(dir, 'aside', 'a')));
  t.same(calls, [`rename ${join(dir, 'a')} -> ${join(dir, 'aside', 'a')}`, `fsync ${join(dir, 'aside')}`, `fsync ${dir}`]);
  await t.rejects(disk.moveInto(dir, 'b', 'linked'), SymlinkRefused);
  t.same(readdirSync(elsewhere), []);
  t.ok(existsSync(join(dir, 'b')));
});

t.test('remove unlinks the entry itself (a symlink, never its target) and fsyncs the directory; a missing one is fine', async (t) => {
  const dir = tempDir(t, 'disk');
  const target = join(tempDir(t, 'elsewhere'), 'target');
  writeFileSync(target, 'stays');
  symlinkSync(target, join(dir, 'link'));
  const { fs: recorded, calls } = recording();
  const disk = new Disk(recorded);
  await disk.remove(dir, 'link');
  await disk.remove(dir, 'never-there');
  t.same(readdirSync(dir), []);
  t.equal(readFileSync(target, 'utf8'), 'stays');
  t.same(calls, [`unlink ${join(dir, 'link')}`, `fsync ${dir}`, `unlink ${join(dir, 'never-there')}`, `fsync ${dir}`]);
});
