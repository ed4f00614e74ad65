// The start-up scan on real directories holding what a kept volume can hold: directories, FIFOs and
// dangling symlinks under DLQ names, a `.tmp-*` directory, short files, foreign keys, a file named
// `corrupt`. Start-up never throws or hangs; each entry is skipped or moved aside, counted, logged.
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmdirSync, symlinkSync, writeFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { Disk } from '../../src/disk/disk.js';
import { setup, writeDlqFile } from '../helpers/dlq.js';
import { tempDir } from '../helpers/temp.js';

/** A valid DLQ file in `dir` whose header names `key`. */
function writeFile(dir: string, name: string, key: string): void {
  writeDlqFile(dir, name.replace(/\.jsonl\.gz$/, ''), [1, 2], key);
}

t.test('entries that are not regular files are skipped in place; the good files are queued', async (t) => {
  const dir = tempDir(t, 'odd');
  mkdirSync(join(dir, 'x.jsonl.gz'));
  symlinkSync(join(dir, 'nowhere'), join(dir, 'dangling.jsonl.gz'));
  mkdirSync(join(dir, '.tmp-leftover-dir'));
  execFileSync('mkfifo', [join(dir, 'fifo.jsonl.gz')]); // opened blocking, this hung start-up on main
  writeFileSync(join(dir, '.tmp-a.jsonl.gz'), 'half');
  writeFile(dir, 'good.jsonl.gz', 'raw/2027/01/15/08/good.jsonl.gz');
  const { store, logs, value } = await setup(t, { dir });
  t.same(store.list().map((f) => f.name), ['good.jsonl.gz']);
  t.equal(await value('dlq_files_rejected_total', '{reason="not_regular"}'), 4, 'directory, symlink, .tmp- directory, FIFO');
  for (const name of ['x.jsonl.gz', 'dangling.jsonl.gz', '.tmp-leftover-dir', 'fifo.jsonl.gz']) {
    t.ok(existsSync(join(dir, name)) || name === 'dangling.jsonl.gz', `${name} left in place`);
    t.ok(logs.some((l) => l.level === 50 && l.msg === 'DLQ entry not a regular file, skipped; remove it by hand' && l.file === name), `${name} logged`);
  }
  t.notOk(existsSync(join(dir, '.tmp-a.jsonl.gz')), 'a temp leftover file is still removed');
});

t.test('short files, foreign keys and ".." keys are moved aside and counted', async (t) => {
  const dir = tempDir(t, 'keys');
  writeFileSync(join(dir, 'short.jsonl.gz'), 'abc'); // shorter than a gzip header: threw a RangeError on main
  writeFile(dir, 'evil.jsonl.gz', 'raw/../outside-prefix/evil.jsonl.gz');
  writeFile(dir, 'other.jsonl.gz', 'other/2027/01/15/08/other.jsonl.gz');
  writeFile(dir, 'good.jsonl.gz', 'raw/2027/01/15/08/good.jsonl.gz');
  const { store, value } = await setup(t, { dir });
  t.same(store.list().map((f) => f.name), ['good.jsonl.gz']);
  t.equal(await value('dlq_files_corrupt_total'), 1);
  t.equal(await value('dlq_files_rejected_total', '{reason="bad_key"}'), 2);
  for (const name of ['short.jsonl.gz', 'evil.jsonl.gz', 'other.jsonl.gz']) t.ok(existsSync(join(dir, 'corrupt', name)), `${name} in corrupt/`);
});

t.test('an unreadable file is moved aside with what to do; start-up goes on', async (t) => {
  const dir = tempDir(t, 'eio');
  writeFile(dir, 'bad-disk.jsonl.gz', 'raw/2027/01/15/08/bad-disk.jsonl.gz');
  writeFile(dir, 'good.jsonl.gz', 'raw/2027/01/15/08/good.jsonl.gz');
  // Injected through the disk layer: EIO cannot be produced on a healthy disk (EACCES, which root
  // ignores, is produced for real in test/e2e/dlq-startup.test.ts).
  const open = (async (...args: Parameters<typeof fs.open>) => {
    if (String(args[0]).endsWith('bad-disk.jsonl.gz')) throw Object.assign(new Error('EIO: i/o error, open'), { code: 'EIO' });
    return fs.open(...args);
  }) as typeof fs.open;
  const { store, logs, value } = await setup(t, { dir, disk: new Disk({ ...fs, open }) });
  t.same(store.list().map((f) => f.name), ['good.jsonl.gz']);
  t.equal(await value('dlq_files_rejected_total', '{reason="unreadable"}'), 1);
  t.ok(existsSync(join(dir, 'corrupt', 'bad-disk.jsonl.gz')));
  t.ok(logs.some((l) => l.msg === 'DLQ file moved aside to corrupt/, never uploaded' && l.reason === 'unreadable' && l.file === 'bad-disk.jsonl.gz' && l.todo === "fix the file's owner, mode or volume and move it back into DLQ_DIR to re-upload it"));
});

t.test('a regular file named `corrupt` hides nothing: good files are queued, bad ones skipped in place', async (t) => {
  const dir = tempDir(t, 'corrupt-file');
  writeFileSync(join(dir, 'corrupt'), 'an operator note');
  writeFile(dir, 'good.jsonl.gz', 'raw/2027/01/15/08/good.jsonl.gz');
  writeFileSync(join(dir, 'garbage.jsonl.gz'), 'not gzip');
  const { store, logs, value } = await setup(t, { dir });
  t.same(store.list().map((f) => f.name), ['good.jsonl.gz'], 'on main the DLQ looked empty');
  t.equal(readFileSync(join(dir, 'corrupt'), 'utf8'), 'an operator note');
  t.ok(existsSync(join(dir, 'garbage.jsonl.gz')), 'cannot be moved aside: stays, skipped');
  t.equal(await value('dlq_files_corrupt_total'), 1);
  t.ok(logs.some((l) => l.msg.startsWith('DLQ corrupt/ directory unusable')));
  t.ok(logs.some((l) => l.msg === 'DLQ file not uploaded, skipped: it could not be moved to corrupt/' && l.reason === 'corrupt' && l.file === 'garbage.jsonl.gz'));
});

t.test('a corrupt/ that is a symlink is refused: a bad file stays in DLQ_DIR, never moved out through it', async (t) => {
  const dir = tempDir(t, 'linked');
  const elsewhere = tempDir(t, 'elsewhere'); // any directory on the volume (on EFS: another instance's)
  symlinkSync(elsewhere, join(dir, 'corrupt'));
  writeFileSync(join(dir, 'garbage.jsonl.gz'), 'not gzip');
  writeFile(dir, 'good.jsonl.gz', 'raw/2027/01/15/08/good.jsonl.gz');
  const { store, logs, value } = await setup(t, { dir });
  t.same(readdirSync(elsewhere), [], 'nothing left DLQ_DIR (on main: garbage.jsonl.gz was moved into the link\'s target)');
  t.ok(existsSync(join(dir, 'garbage.jsonl.gz')), 'kept in place, skipped');
  t.ok(lstatSync(join(dir, 'corrupt')).isSymbolicLink(), 'the link is left as it is');
  t.same(store.list().map((f) => f.name), ['good.jsonl.gz']);
  t.equal(await value('dlq_events_dropped_total', '{reason="quarantined"}'), 0);
  t.ok(logs.some((l) => l.level === 50 && l.msg.startsWith('DLQ corrupt/ directory unusable') && (l.err as { message: string }).message.startsWith(`${join(dir, 'corrupt')} is a symbolic link`)), 'says why');
  t.ok(logs.some((l) => l.msg === 'DLQ file not uploaded, skipped: it could not be moved to corrupt/' && l.reason === 'corrupt' && l.file === 'garbage.jsonl.gz'));
});

t.test('a corrupt/ replaced by a symlink after start: a file found damaged at re-upload stays in DLQ_DIR', async (t) => {
  const dir = tempDir(t, 'swapped');
  const elsewhere = tempDir(t, 'elsewhere');
  writeDlqFile(dir, 'damaged', [1, 2, 3]);
  const where = join(dir, 'damaged.jsonl.gz');
  const data = readFileSync(where);
  data[data.length - 12] ^= 0xff; // in the deflate stream: the header still reads, the scan queues it
  writeFileSync(where, data);
  const { store } = await setup(t, { dir });
  rmdirSync(join(dir, 'corrupt'));
  symlinkSync(elsewhere, join(dir, 'corrupt'));
  t.equal(await store.read(store.oldest()!), undefined, 'never handed out');
  t.same(readdirSync(elsewhere), [], 'not moved through the link');
  t.ok(existsSync(where));
  t.equal(store.oldest(), undefined, 'skipped from then on');
});
