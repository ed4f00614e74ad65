// Leases and adopt locks on a shared root: fresh and stale, one adopter at a time, takeover from a
// dead adopter; and the holder's fencing (a lease lost or not renewed exits its process).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { stat } from 'node:fs/promises';
import { mkdirSync, readdirSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { exists, Lease, LeaseWatch, takeAdoptLock } from '../../src/wal/lease.js';
import { ROOT } from '../helpers/server.js';

const STALE_MS = 60_000;
const HOUR = 3_600_000;
const T0 = 1_800_000_000_000;
/** Sets a file's mtime `offsetMs` from now, as a holder whose clock is that far off would. */
const dated = (file: string, offsetMs: number) => utimesSync(file, new Date(Date.now() + offsetMs), new Date(Date.now() + offsetMs));

/** A LeaseWatch on a clock the test moves (`clock.ms`), as this instance's monotonic time. */
function watch() {
  const clock = { ms: 0 };
  return { clock, leases: new LeaseWatch(STALE_MS, () => clock.ms) };
}

t.test('a lease is stale once it has read the same for the stale time by the watcher\'s clock, whatever its mtime says', async (t) => {
  const root = t.testdir();
  const dir = join(root, 'a');
  const lease = await Lease.take(dir, 'a', STALE_MS, pino({ level: 'silent' }));
  const { clock, leases } = watch();
  dated(join(dir, 'lease'), -10 * STALE_MS);
  t.equal(await leases.stale(dir), false, 'first seen: watched for a whole stale time before it can be judged, however old its mtime');
  clock.ms += STALE_MS;
  t.equal(await leases.stale(dir), false, 'unchanged for exactly the stale time: not yet');
  clock.ms += 1;
  t.equal(await leases.stale(dir), true, 'unchanged for longer: stale');
  dated(join(dir, 'lease'), -10 * STALE_MS + 1000); // a renewal by a holder whose clock is far behind
  t.equal(await leases.stale(dir), false, 'any change is a renewal');
  await lease.release();
  t.equal(await leases.stale(dir), false, 'no lease: judged by the directory, watched afresh');
  clock.ms += STALE_MS + 1;
  t.equal(await leases.stale(dir), true);
  rmSync(dir, { recursive: true });
  t.equal(await leases.stale(dir), false, 'gone: nothing to adopt');
});

t.test('clock skew: a holder hours ahead or behind, renewing, is never judged dead; once it stops, it is, by the watcher\'s clock alone', async (t) => {
  for (const skew of [-5 * HOUR, -STALE_MS / 2, STALE_MS / 2, 5 * HOUR]) {
    const dir = join(t.testdir(), `skew${skew}`);
    await Lease.take(dir, 'a', STALE_MS, pino({ level: 'silent' })).then((lease) => lease.release());
    writeFileSync(join(dir, 'lease'), '{"instanceId":"a","token":"t"}\n');
    const { clock, leases } = watch();
    for (let renewal = 0; renewal < 20; renewal++) {
      dated(join(dir, 'lease'), skew + renewal * 1000); // each renewal sets the holder's own time
      t.equal(await leases.stale(dir), false, `skew ${skew} ms, renewal ${renewal}: alive`);
      clock.ms += STALE_MS / 2; // renewals half a stale time apart, by the watcher's clock
    }
    clock.ms += STALE_MS;
    t.equal(await leases.stale(dir), true, `skew ${skew} ms: stale once its renewals stop`);
  }
});

t.test('a renewal the file server stamps with the same mtime (it ignores the time asked for) is still a change: its ctime moved', async (t) => {
  const dir = join(t.testdir(), 'a');
  await Lease.take(dir, 'a', STALE_MS, pino({ level: 'silent' })).then((lease) => lease.release());
  writeFileSync(join(dir, 'lease'), '{"instanceId":"a","token":"t"}\n');
  const fixed = new Date(T0);
  const { clock, leases } = watch();
  for (let renewal = 0; renewal < 5; renewal++) {
    utimesSync(join(dir, 'lease'), fixed, fixed);
    t.equal(await leases.stale(dir), false, `renewal ${renewal}: alive`);
    clock.ms += STALE_MS + 1;
  }
  t.equal(await leases.stale(dir), true, 'no renewal since: stale');
});

t.test('a watch forgets the directories the root no longer lists: one back later is watched afresh', async (t) => {
  const dir = join(t.testdir(), 'a');
  mkdirSync(dir);
  const { clock, leases } = watch();
  t.equal(await leases.stale(dir), false);
  clock.ms += STALE_MS + 1;
  leases.retain(new Set());
  t.equal(await leases.stale(dir), false, 'first seen again');
  clock.ms += STALE_MS + 1;
  leases.retain(new Set([dir]));
  t.equal(await leases.stale(dir), true, 'kept while listed');
});

t.test('an adopt lock naming this instance (a release that failed, or a restart under the same id) is taken over at once: it adopts one directory at a time', async (t) => {
  const root = t.testdir({ dead: { lease: '{}' }, b: { lease: '{}' } });
  writeFileSync(join(root, 'dead', 'adopt.lock.0'), JSON.stringify({ instanceId: 'b' }));
  const { leases } = watch();
  t.equal(await takeAdoptLock(root, join(root, 'dead'), 'c', leases), undefined, 'to another instance it is b\'s, alive');
  t.ok(await takeAdoptLock(root, join(root, 'dead'), 'b', leases), 'b itself takes the next generation');
  t.same(readdirSync(join(root, 'dead')).sort(), ['adopt.lock.1', 'lease']);
});

t.test('of survivors racing for one dead directory, exactly one adopts it', async (t) => {
  const root = t.testdir();
  mkdirSync(join(root, 'dead'));
  for (const id of ['b', 'c', 'd']) mkdirSync(join(root, id));
  const { leases } = watch();
  const locks = await Promise.all(['b', 'c', 'd'].map((id) => takeAdoptLock(root, join(root, 'dead'), id, leases)));
  t.equal(locks.filter((l) => l !== undefined).length, 1);
  await locks.find((l) => l !== undefined)!.release();
  t.ok(await takeAdoptLock(root, join(root, 'dead'), 'b', leases), 'free again once released');
});

t.test('an adopt lock whose adopter died (its lease unchanged for the stale time) is taken over, by one of two survivors', async (t) => {
  const root = t.testdir({ dead: {}, adopter: { lease: '{}' }, b: {}, c: {}, d: {} });
  writeFileSync(join(root, 'dead', 'adopt.lock.0'), JSON.stringify({ instanceId: 'adopter' }));
  const { clock, leases } = watch();
  t.equal(await takeAdoptLock(root, join(root, 'dead'), 'b', leases), undefined, 'its adopter is alive (just seen)');
  clock.ms += STALE_MS + 1;
  const locks = await Promise.all(['b', 'c'].map((id) => takeAdoptLock(root, join(root, 'dead'), id, leases)));
  t.equal(locks.filter((l) => l !== undefined).length, 1);
  t.same(readdirSync(join(root, 'dead')), ['adopt.lock.1'], 'the dead adopter\'s lock is gone, the new one is the next generation');
  t.equal(await takeAdoptLock(root, join(root, 'dead'), 'd', leases), undefined, 'a third survivor finds it held');
});

// A symlink to itself: stat and read fail with ELOOP, a real error that is not "the file is gone"
// (the tests run as root, for whom a chmod denies nothing).
const unreadable = (file: string) => symlinkSync(file, file);

t.test('a lease that cannot be read is not stale, however long it stays so', async (t) => {
  const root = t.testdir({ live: {} });
  unreadable(join(root, 'live', 'lease'));
  const { clock, leases } = watch();
  await t.rejects(leases.stale(join(root, 'live')), { code: 'ELOOP' }, 'not judged by the directory: the lease is there');
  clock.ms += 10 * STALE_MS;
  await t.rejects(leases.stale(join(root, 'live')), { code: 'ELOOP' });
});

t.test('an adopt lock that cannot be read is not taken over; one only partly written is judged by its directory\'s lease', async (t) => {
  const root = t.testdir({ dead: { lease: '{}' }, b: {} });
  const { clock, leases } = watch();
  t.equal(await leases.stale(join(root, 'dead')), false);
  clock.ms += STALE_MS + 1;
  unreadable(join(root, 'dead', 'adopt.lock.0'));
  await t.rejects(takeAdoptLock(root, join(root, 'dead'), 'b', leases), { code: 'ELOOP' });
  t.same(readdirSync(join(root, 'dead')).sort(), ['adopt.lock.0', 'lease'], 'no new generation');
  rmSync(join(root, 'dead', 'adopt.lock.0'));
  writeFileSync(join(root, 'dead', 'adopt.lock.0'), '{"instanc');
  t.ok(await takeAdoptLock(root, join(root, 'dead'), 'b', leases), 'a torn lock in a dead directory: its writer died');
});

t.test('a path that cannot be looked at is not absent (an adopter would skip a WAL it cannot see, then remove its directory)', async (t) => {
  const root = t.testdir({ dead: {} });
  unreadable(join(root, 'dead', 'wal'));
  await t.rejects(exists(join(root, 'dead', 'wal')), { code: 'ELOOP' });
  t.equal(await exists(join(root, 'dead', 'dlq')), false, 'one that is not there is absent');
});

t.test('an instance directory that is a symlink is refused: this instance never writes its lease (or WAL) through it', async (t) => {
  const root = t.testdir({ elsewhere: {} });
  symlinkSync(join(root, 'elsewhere'), join(root, 'a'));
  await t.rejects(Lease.take(join(root, 'a'), 'a', STALE_MS, pino({ level: 'silent' })), { code: 'ELOOP' });
  t.same(readdirSync(join(root, 'elsewhere')), [], 'on main the lease was written into the link\'s target');
});

/** Runs test/fixtures/lease-holder.ts with `fault`; its exit code and log lines (level as a word). */
async function holder(t: Test, fault: 'none' | 'lost' | 'stuck' | 'unreadable', dir = join(t.testdir(), 'holder')): Promise<{ code: number | null; lines: { level: string; msg: string }[] }> {
  const fixture = join(ROOT, 'test/fixtures/lease-holder.ts');
  const child = spawn(process.execPath, ['--experimental-transform-types', '--disable-warning=ExperimentalWarning', `--import=${join(ROOT, 'test/node-hooks.mjs')}`, fixture, dir, '2000', fault], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, lines: out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: string; msg: string }) };
}

// The fencing in a process of its own, since it exits it: stale time 2 s, renewals every 250 ms.
t.test('a lease found gone or taken: the holder logs it at fatal and exits 1 (it must stop writing there)', async (t) => {
  const { code, lines } = await holder(t, 'lost');
  t.equal(code, 1);
  t.match(lines.at(-1), { level: 'fatal', msg: /^lease lost: the lease file is gone or another instance's/ });
});

t.test('a lease not renewed for half the stale time (a hung volume, a paused process): fatal, exit 1, before an adopter may judge it dead', async (t) => {
  const { code, lines } = await holder(t, 'stuck');
  t.equal(code, 1);
  t.match(lines.at(-1), { level: 'fatal', msg: /^lease not renewed for half of DURABLE_LEASE_STALE_MS/, staleMs: 2000 });
});

t.test('a lease that cannot be read for a moment is a failed renewal, logged; the holder keeps it and exits 0 when done', async (t) => {
  const { code, lines } = await holder(t, 'unreadable');
  t.equal(code, 0);
  t.equal(lines.filter((l) => l.level === 'warn' && l.msg === 'lease could not be renewed; trying again').length, 2);
  t.notOk(lines.some((l) => l.level === 'fatal'));
});

t.test('each renewal moves the lease\'s mtime a whole second at least, so that one-second mtimes or a stalled clock still show a change', async (t) => {
  const dir = join(t.testdir(), 'holder');
  const running = holder(t, 'none', dir); // renews every 250 ms for 2 s
  // Watched until the holder exits, not for a fixed time: under load its start alone can take seconds.
  let done = false;
  running.then(() => (done = true), () => (done = true));
  const stamps = new Set<number>();
  while (!done) {
    const mtime = await stat(join(dir, 'lease')).then((s) => s.mtimeMs, () => undefined);
    if (mtime !== undefined) stamps.add(mtime);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  t.equal((await running).code, 0);
  const seen = [...stamps].sort((a, b) => a - b);
  t.ok(seen.length >= 3, `${seen.length} renewals seen`);
  for (let i = 1; i < seen.length; i++) t.ok(seen[i]! - seen[i - 1]! >= 1000, `renewal ${i}: ${seen[i]! - seen[i - 1]!} ms past the last`);
});

