// The DLQ directory lock on real files: one holder; a dead holder's lock is taken over; a live or
// remote holder is named in the refusal. Two real server processes: test/e2e/dlq-lock.test.ts.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { acquireLock, DlqLocked, LOCK_FILE } from '../../src/dlq/lock.js';
import { tempDir } from '../helpers/temp.js';

const holder = (pid: number, host = os.hostname()) => JSON.stringify({ pid, host, instanceId: 'task-a', startedAt: '2027-01-01T00:00:00.000Z', token: 'x' });

t.test('the lock file names its holder and goes on release', async (t) => {
  const dir = tempDir(t, 'lock');
  const lock = await acquireLock(dir, 'task-b');
  t.match(JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8')), { pid: process.pid, host: os.hostname(), instanceId: 'task-b' });
  lock.release();
  t.notOk(existsSync(join(dir, LOCK_FILE)));
});

t.test('a live holder on this host: refused, with pid, host and instance in the message', async (t) => {
  const dir = tempDir(t, 'lock');
  writeFileSync(join(dir, LOCK_FILE), holder(process.ppid)); // the test runner: alive
  const err = await acquireLock(dir, 'task-b').catch((e: unknown) => e);
  t.type(err, DlqLocked);
  t.match((err as Error).message, `is in use by pid ${process.ppid} on host ${os.hostname()} (instance task-a)`);
});

t.test('a dead holder on this host: taken over', async (t) => {
  const dir = tempDir(t, 'lock');
  const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
  writeFileSync(join(dir, LOCK_FILE), holder(dead));
  const lock = await acquireLock(dir, 'task-b');
  t.equal(lock.holder.pid, process.pid);
  lock.release();
});

t.test('a holder on another host: never taken over (it cannot be checked from here)', async (t) => {
  const dir = tempDir(t, 'lock');
  writeFileSync(join(dir, LOCK_FILE), holder(1, 'some-other-host'));
  await t.rejects(acquireLock(dir, 'task-b'), { name: 'DlqLocked' });
});
