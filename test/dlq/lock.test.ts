// DLQ_DIR's lock is the shared directory lock (test/disk/lock.test.ts), refused in DLQ_DIR's words.
import os from 'node:os';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { acquireLock, DlqLocked, LOCK_FILE } from '../../src/dlq/lock.js';
import { tempDir } from '../helpers/temp.js';

t.test('a live holder: DlqLocked names pid, host and instance, and says what to do', async (t) => {
  const dir = tempDir(t, 'lock');
  writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: process.ppid, host: os.hostname(), instanceId: 'task-a', startedAt: '2027-01-01T00:00:00.000Z', token: 'x' }));
  const err = await acquireLock(dir, 'task-b').catch((e: unknown) => e);
  t.type(err, DlqLocked);
  t.equal((err as Error).message, `DLQ_DIR ${dir} is in use by pid ${process.ppid} on host ${os.hostname()} (instance task-a) since 2027-01-01T00:00:00.000Z: one process per DLQ directory. Stop that process or give this one its own DLQ_DIR; if that host is gone for good, remove ${join(dir, LOCK_FILE)}`);
});

t.test('a free directory: the lock is taken and released', async (t) => {
  const dir = tempDir(t, 'lock');
  const lock = await acquireLock(dir, 'task-b');
  t.equal(lock.holder.instanceId, 'task-b');
  lock.release();
  (await acquireLock(dir, 'task-c')).release();
});
