// The disk layer's own errors: each carries the name, code and fields its callers branch on (the
// DLQ store tells a failed directory fsync from a change not made, a file too large from one
// unreadable), and DirNotSynced keeps the file system's error as its cause.
import t from 'tap';
import { DirNotSynced, NotRegular, SymlinkRefused, TooLarge } from '../../src/disk/errors.js';

t.test('NotRegular and SymlinkRefused are Errors with the errno-like code callers match on', async (t) => {
  const notRegular = new NotRegular('a directory');
  t.type(notRegular, Error);
  t.equal(notRegular.name, 'NotRegular');
  t.equal(notRegular.code, 'ENOTREG');
  t.equal(notRegular.message, 'a directory');
  t.match(String(notRegular.stack), /^NotRegular: a directory/, 'the name shows in a logged stack');
  const symlink = new SymlinkRefused('/x is a symbolic link');
  t.type(symlink, Error);
  t.equal(symlink.name, 'SymlinkRefused');
  t.equal(symlink.code, 'ELOOP', 'the code open(O_NOFOLLOW) gives, so one check covers both');
  t.notOk(symlink instanceof NotRegular, 'the two are told apart');
});

t.test('TooLarge carries the size it found, and says it in its message', async (t) => {
  const err = new TooLarge(3 * 2 ** 31);
  t.type(err, Error);
  t.equal(err.name, 'TooLarge');
  t.equal(err.size, 6442450944);
  t.equal(err.message, '6442450944 bytes');
});

t.test('DirNotSynced names the directory, takes the code of the failed fsync, and keeps it as the cause', async (t) => {
  const cause = Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
  const err = new DirNotSynced('/data/dlq', cause);
  t.type(err, Error);
  t.equal(err.name, 'DirNotSynced');
  t.equal(err.dir, '/data/dlq');
  t.equal(err.code, 'EIO');
  t.equal(err.cause, cause);
  t.equal(err.message, 'directory fsync failed: EIO: i/o error, fsync');
  t.equal(new DirNotSynced('/d', new Error('no code')).code, undefined, 'a cause without a code gives none, not a made-up one');
});
