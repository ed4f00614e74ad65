// The directory lock (DLQ_DIR, WAL_DIR) on real files and processes: one holder; a dead holder's lock is taken
// over, and so is one whose pid is now another process or is from an earlier boot; a live or remote
// holder is named in the refusal; two pid namespaces (run for real with unshare) keep apart. Two real server processes: test/e2e/dlq-lock.test.ts.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, lstatSync, readFileSync, readlinkSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import t, { type Test } from 'tap';
import { acquireLock, DirLocked, LOCK_FILE, LOCK_STALE_MS, pidStart } from '../../src/disk/lock.js';
import { ROOT } from '../helpers/server.js';
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
  t.type(err, DirLocked);
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
  await t.rejects(acquireLock(dir, 'task-b'), { name: 'DirLocked' });
});

// The holder of a lock: a real live process, recorded with a start time, boot id or pid namespace.
const recorded = (pid: number, fields: Record<string, unknown>) => JSON.stringify({ pid, host: os.hostname(), instanceId: 'task-a', startedAt: '2027-01-01T00:00:00.000Z', token: 'x', bootId: readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(), pidNs: readlinkSync('/proc/self/ns/pid'), ...fields });

function sleeper(t: Test): number {
  const child = spawn('sleep', ['300'], { stdio: 'ignore' });
  t.teardown(() => child.kill());
  return child.pid!;
}

t.test('a live pid that is another process now (pid reused: its start time differs) is taken over', async (t) => {
  const dir = tempDir(t, 'lock');
  const pid = sleeper(t);
  writeFileSync(join(dir, LOCK_FILE), recorded(pid, { pidStart: pidStart(pid)! - 1 })); // on main: refused forever
  const lock = await acquireLock(dir, 'task-b');
  t.equal(lock.holder.pid, process.pid);
  t.equal(lock.holder.pidStart, pidStart('self'));
  lock.release();
});

t.test('a live pid with its recorded start time is refused', async (t) => {
  const dir = tempDir(t, 'lock');
  const pid = sleeper(t);
  writeFileSync(join(dir, LOCK_FILE), recorded(pid, { pidStart: pidStart(pid) }));
  await t.rejects(acquireLock(dir, 'task-b'), { name: 'DirLocked' });
});

t.test('a lock naming our own pid with another start time (a container restarted as pid 1) is taken over', async (t) => {
  const dir = tempDir(t, 'lock');
  writeFileSync(join(dir, LOCK_FILE), recorded(process.pid, { pidStart: pidStart('self')! - 1 }));
  (await acquireLock(dir, 'task-b')).release();
});

t.test('a lock from an earlier boot is taken over, even naming a live pid', async (t) => {
  const dir = tempDir(t, 'lock');
  writeFileSync(join(dir, LOCK_FILE), recorded(process.ppid, { bootId: '00000000-0000-0000-0000-000000000000', pidStart: pidStart(process.ppid) }));
  (await acquireLock(dir, 'task-b')).release();
});

t.test('a lock from another pid namespace: refused while its heartbeat is fresh, taken over once it is stale', async (t) => {
  const dir = tempDir(t, 'lock');
  const file = join(dir, LOCK_FILE);
  writeFileSync(file, recorded(1, { pidNs: 'pid:[1]', pidStart: 1 }));
  await t.rejects(acquireLock(dir, 'task-b'), { name: 'DirLocked' }, 'its pid 1 is not our pid 1');
  const old = new Date(Date.now() - LOCK_STALE_MS - 1000);
  utimesSync(file, old, old);
  (await acquireLock(dir, 'task-b')).release();
});

/** Runs `script` (ESM, given the lock module as `lock` and the directory as `dir`) as pid 1 of a new pid namespace. */
function inNewPidNamespace(script: string, dir: string) {
  const lockModule = pathToFileURL(join(ROOT, 'dist', 'disk', 'lock.js')).href;
  return spawn('unshare', ['--pid', '--fork', '--kill-child', '--mount-proc', process.execPath, '--input-type=module', '-e', `const lock = await import(${JSON.stringify(lockModule)}); const dir = ${JSON.stringify(dir)};\n${script}`], { stdio: ['ignore', 'pipe', 'inherit'] });
}

t.test('two pid namespaces on one host (containers with one hostname, both pid 1): neither takes the other\'s lock', { skip: process.getuid?.() === 0 ? false : 'unshare needs root' }, async (t) => {
  const dir = tempDir(t, 'lock');
  const holder = inNewPidNamespace("const l = await lock.acquireLock(dir, 'ns-a'); console.log(`held ${l.holder.pid}`); setInterval(() => {}, 1000);", dir);
  t.teardown(() => holder.kill('SIGKILL'));
  const [line] = (await once(holder.stdout, 'data')) as [Buffer];
  t.equal(line.toString().trim(), 'held 1', 'pid 1 in its namespace');
  await t.rejects(acquireLock(dir, 'host'), { name: 'DirLocked' }, 'refused from the host namespace');
  const second = inNewPidNamespace("await lock.acquireLock(dir, 'ns-b').then(() => console.log('took'), (e) => console.log(e.name));", dir);
  const [answer] = (await once(second.stdout, 'data')) as [Buffer];
  t.equal(answer.toString().trim(), 'DirLocked', 'refused by another pid 1 (on main it took the lock)');
});

t.test('a lock file that is a symlink is never read or written through: its target is left alone, the lock taken', async (t) => {
  const dir = tempDir(t, 'lock');
  const elsewhere = join(tempDir(t, 'elsewhere'), 'holder');
  writeFileSync(elsewhere, holder(process.ppid)); // a live holder, were it followed
  symlinkSync(elsewhere, join(dir, LOCK_FILE));
  const lock = await acquireLock(dir, 'task-b');
  t.equal(JSON.parse(readFileSync(elsewhere, 'utf8')).pid, process.ppid, 'the target is untouched');
  t.notOk(lstatSync(join(dir, LOCK_FILE)).isSymbolicLink(), 'a lock file of its own in place of the link');
  lock.release();
});
