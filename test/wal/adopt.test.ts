// The adoption of a dead instance's directory on a shared root (DURABLE_ROOT), on real
// directories, leases and adopt locks, real DLQ files and a real S3 server (s3rver, behind the
// test proxy where a PUT must stall): what is adopted and what is left alone, the order of the
// steps (fence with our lease, replay the WAL, drain the DLQ, remove), the checks between them, and
// a stop mid-way. The WAL replay is the function the server hands in (src/server.ts builds it with
// src/wiring.ts); here it is the test's, to see when it runs and to make it leave events unsettled.
import { existsSync, mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ListObjectsCommand } from '@aws-sdk/client-s3';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import t, { type Test } from 'tap';
import { createDlqMetrics } from '../../src/metrics/dlq.js';
import { createUploadMetrics } from '../../src/metrics/upload.js';
import { createWalMetrics } from '../../src/metrics/wal.js';
import { S3Uploader } from '../../src/upload/s3.js';
import { Adopter, type ReplayWal } from '../../src/wal/adopt.js';
import { LeaseWatch, takeAdoptLock } from '../../src/wal/lease.js';
import { T0, writeDlqFile } from '../helpers/dlq.js';
import { type LogLine, memoryLog } from '../helpers/log.js';
import { BUCKET, proxiedS3 } from '../helpers/s3.js';
import { tempDir } from '../helpers/temp.js';

// Stale after 1 s, so the scans come every 500 ms. The adopter judges leases on a clock that runs
// a stale time ahead at each look (AdoptionParts.now): a directory whose lease does not change is
// dead at its second look, one kept alive (keepAlive) changes between any two; so no test depends
// on how long it takes.
const STALE_MS = 1000;
const SELF = 'survivor';

const { s3, proxy, client } = await proxiedS3(t);


/** A live instance's lease in `dir`: rewritten ten times a second, as a holder renews it (the test's stand-in for one). */
function keepAlive(t: Test, dir: string, id: string): void {
  writeFileSync(join(dir, 'lease'), JSON.stringify({ instanceId: id }));
  let beat = 0;
  const timer = setInterval(() => {
    const at = new Date(T0 + ++beat); // its clock says anything: only the change counts
    utimesSync(join(dir, 'lease'), at, at);
  }, 100);
  t.teardown(() => clearInterval(timer));
}

let fileSeq = 0;

/**
 * An instance directory under `root` holding a WAL directory and/or DLQ files (their names and keys
 * returned, the keys unique to the file: the S3 server is shared); dead (nothing in it changes)
 * unless kept alive.
 */
function instanceDir(t: Test, root: string, id: string, { wal = false, dlqFiles = 0, alive = false } = {}): { dir: string; keys: string[]; files: string[] } {
  const dir = join(root, id);
  mkdirSync(dir, { recursive: true });
  if (wal) {
    mkdirSync(join(dir, 'wal'));
    writeFileSync(join(dir, 'wal', '.lock'), JSON.stringify({ instanceId: id })); // its dead holder's
  }
  const keys: string[] = [];
  const files: string[] = [];
  if (dlqFiles > 0) {
    mkdirSync(join(dir, 'dlq'));
    writeFileSync(join(dir, 'dlq', '.lock'), JSON.stringify({ instanceId: id }));
    for (let i = 0; i < dlqFiles; i++) {
      const name = `${T0}-${id}-${fileSeq++}`;
      keys.push(writeDlqFile(join(dir, 'dlq'), name, [i, i + 100], undefined, T0 + i));
      files.push(join(dir, 'dlq', `${name}.jsonl.gz`));
    }
  }
  if (alive) keepAlive(t, dir, id);
  return { dir, keys, files };
}

/** A started Adopter on `root` as instance SELF, its logs, and a log waiter. */
function adopter(t: Test, root: string, replay: ReplayWal, fresh: () => boolean = () => true) {
  const waiting = new Set<() => void>();
  const { log, lines: logs } = memoryLog(() => {
    for (const wake of waiting) wake();
    waiting.clear();
  });
  const walRegistry = new Registry();
  const dlqRegistry = new Registry();
  const uploader = new S3Uploader(client, { bucket: BUCKET, maxAttempts: 1, timeoutMs: 2000 }, createUploadMetrics(new Registry()), pino({ level: 'silent' }));
  const wal = { dir: join(root, SELF, 'wal'), maxBytes: 1 << 20, syncIntervalMs: 0, syncBytes: 1 << 16, segmentBytes: 1 << 16, sharedRoot: root, leaseStaleMs: STALE_MS };
  let clock = 0;
  const now = () => (clock += STALE_MS + 1);
  const adopting = new Adopter({ instanceId: SELF, wal, replay, dlq: { ttlSeconds: 3600, prefix: 'raw' }, uploader, metrics: { wal: createWalMetrics(walRegistry), dlq: createDlqMetrics(dlqRegistry) }, fresh, now }, log);
  adopting.start();
  t.teardown(() => adopting.stop());
  /** Resolves with the `count`th log line that `match` takes. */
  const waitFor = async (match: (l: LogLine) => boolean, count = 1): Promise<LogLine> => {
    while (logs.filter(match).length < count) await new Promise<void>((resolve) => waiting.add(resolve));
    return logs.filter(match)[count - 1]!;
  };
  const metric = async (registry: Registry, name: string) => (await registry.getSingleMetric(name)!.get()).values[0]!.value;
  return { adopting, logs, waitFor, adopted: () => metric(walRegistry, 'wal_adopted_dirs_total'), reuploaded: () => metric(dlqRegistry, 'dlq_events_reuploaded_total') };
}

const storedKeys = async () => new Set(((await s3.client.send(new ListObjectsCommand({ Bucket: BUCKET }))).Contents ?? []).map((o) => o.Key));
const notFinished = (dir: string) => (l: LogLine) => l.msg === 'adopting a directory is not finished; will go on later' && l.dir === dir;

t.test('a dead instance\'s directory: fenced with our lease, its WAL replayed under its name, then its DLQ drained, then removed', async (t) => {
  const root = tempDir(t, 'root');
  const { dir, keys } = instanceDir(t, root, 'dead', { wal: true, dlqFiles: 2 });
  const atReplay: Record<string, unknown>[] = [];
  const replay: ReplayWal = async (walDir, deadId) => {
    atReplay.push({
      walDir,
      deadId,
      lease: JSON.parse(readFileSync(join(dir, 'lease'), 'utf8')).instanceId,
      adoptLock: JSON.parse(readFileSync(join(dir, 'adopt.lock.0'), 'utf8')).instanceId,
      walLock: existsSync(join(dir, 'wal', '.lock')),
      dlqLock: existsSync(join(dir, 'dlq', '.lock')),
      dlqFiles: readdirSync(join(dir, 'dlq')).filter((n) => n.endsWith('.jsonl.gz')).length,
    });
    return 0;
  };
  const a = adopter(t, root, replay);
  await a.waitFor((l) => l.msg === 'adopted and removed the directory of a dead instance' && l.dead === 'dead');
  t.same(atReplay, [{ walDir: join(dir, 'wal'), deadId: 'dead', lease: SELF, adoptLock: SELF, walLock: false, dlqLock: false, dlqFiles: 2 }], 'replayed once, fenced and unlocked first, before the DLQ drain');
  const stored = await storedKeys();
  t.ok(keys.every((k) => stored.has(k)), 'every DLQ file in S3');
  t.equal(await a.reuploaded(), 4);
  t.notOk(existsSync(dir), 'removed');
  t.equal(await a.adopted(), 1);
  t.ok(a.logs.some((l) => l.msg === 'adopting the directory of a dead instance: its lease is stale' && l.dead === 'dead'));
});

t.test('a WAL left unsettled keeps the directory (DLQ not drained, the adopt lock let go); the next scan goes on', async (t) => {
  const root = tempDir(t, 'root');
  const { dir, keys, files } = instanceDir(t, root, 'dead', { wal: true, dlqFiles: 1 });
  let unsettled = 2;
  const replay: ReplayWal = async () => unsettled;
  const a = adopter(t, root, replay);
  const first = await a.waitFor(notFinished(dir));
  t.match(first.err, { message: '2 events of the adopted WAL are not settled' });
  t.ok(existsSync(files[0]!), 'the DLQ not drained yet');
  t.notOk((await storedKeys()).has(keys[0]!));
  t.same(readdirSync(dir).filter((n) => n.startsWith('adopt.lock')), [], 'the adopt lock released');
  t.equal(await a.adopted(), 0);
  unsettled = 0;
  await a.waitFor((l) => l.msg === 'adopted and removed the directory of a dead instance' && l.dead === 'dead');
  t.ok((await storedKeys()).has(keys[0]!));
  t.notOk(existsSync(dir));
});

t.test('left alone: our own directory, one whose lease is fresh, one with nothing to adopt, one a live survivor is adopting', async (t) => {
  const root = tempDir(t, 'root');
  const own = instanceDir(t, root, SELF, { wal: true, dlqFiles: 1 });
  const alive = instanceDir(t, root, 'alive', { wal: true, dlqFiles: 1, alive: true });
  const empty = instanceDir(t, root, 'empty');
  writeFileSync(join(empty.dir, 'note'), 'no wal, no dlq');
  instanceDir(t, root, 'busy', { alive: true });
  const held = instanceDir(t, root, 'held', { dlqFiles: 1 });
  writeFileSync(join(held.dir, 'adopt.lock.0'), JSON.stringify({ instanceId: 'busy' }));
  // A dead directory whose adoption never finishes: its second "not finished" line means a whole scan went by.
  const sentinel = instanceDir(t, root, 'sentinel', { wal: true });
  const replayed: string[] = [];
  const a = adopter(t, root, async (_walDir, deadId) => {
    replayed.push(deadId);
    return 1;
  });
  await a.waitFor(notFinished(sentinel.dir), 2);
  t.same([...new Set(replayed)], ['sentinel'], 'no other WAL replayed');
  for (const d of [own, alive, held]) t.ok(existsSync(d.files[0]!), `${d.dir}: its DLQ file stays`);
  t.ok(existsSync(join(empty.dir, 'note')), 'a directory with neither WAL nor DLQ stays as it is');
  t.same(readdirSync(held.dir).filter((n) => n.startsWith('adopt.lock')), ['adopt.lock.0'], 'the live adopter\'s lock stands');
  t.notOk(existsSync(join(alive.dir, 'adopt.lock.0')));
  t.equal(JSON.parse(readFileSync(join(alive.dir, 'lease'), 'utf8')).instanceId, 'alive', 'its lease not taken');
  t.same(proxy.puts, [], 'nothing uploaded');
  t.equal(await a.adopted(), 0);
});

t.test('an adopter whose own lease is not fresh stops before the replay, and before the drain if it goes stale during one', async (t) => {
  const root = tempDir(t, 'root');
  const dirs = [instanceDir(t, root, 'dead-a', { wal: true, dlqFiles: 1 }), instanceDir(t, root, 'dead-b', { wal: true, dlqFiles: 1 })];
  let fresh = true;
  const replayed: string[] = [];
  const a = adopter(t, root, async (_walDir, deadId) => {
    replayed.push(deadId);
    fresh = false; // paused long enough, mid-replay, to be judged dead itself
    return 0;
  }, () => fresh);
  // Whichever comes first in the scan is replayed and then stops; the other is not even replayed.
  const lines = await Promise.all(dirs.map((d) => a.waitFor(notFinished(d.dir))));
  t.same(lines.map((l) => (l.err as { message: string }).message), ['this instance\'s own lease is not fresh', 'this instance\'s own lease is not fresh']);
  t.equal(replayed.length, 1, 'one WAL replayed, the other not');
  t.ok(dirs.every((d) => existsSync(d.files[0]!)), 'no DLQ drained');
  t.same(proxy.puts, []);
  t.ok(dirs.every((d) => existsSync(d.dir)));
});

t.test('another survivor that takes the adoption over mid-replay: this one stops there, its lock gone, the other\'s standing', async (t) => {
  const root = tempDir(t, 'root');
  const { dir, files } = instanceDir(t, root, 'dead', { wal: true, dlqFiles: 1 });
  let once = true;
  // SELF has no directory under the root, so to the other survivor its adoption looks abandoned.
  const a = adopter(t, root, async () => {
    if (once) t.ok(await takeAdoptLock(root, dir, 'other', new LeaseWatch(STALE_MS)), 'the other survivor takes it over');
    once = false;
    return 0;
  });
  t.match((await a.waitFor(notFinished(dir))).err, { message: 'another instance took the adoption over' });
  t.ok(existsSync(files[0]!), 'the DLQ left to the other');
  t.same(proxy.puts, []);
  t.same(readdirSync(dir).filter((n) => n.startsWith('adopt.lock')), ['adopt.lock.1'], 'the other\'s lock still holds');
});

t.test('stop() mid-drain: the PUT in flight is cut, its file and the directory stay for another instance', async (t) => {
  const root = tempDir(t, 'root');
  const { dir, keys, files } = instanceDir(t, root, 'dead', { dlqFiles: 2 });
  let stopping: Promise<void> | undefined;
  const a = adopter(t, root, async () => 0);
  proxy.decide = () => {
    stopping = a.adopting.stop();
    return 'stall';
  };
  const unfinished = await a.waitFor(notFinished(dir));
  await stopping;
  t.match(unfinished.err, { message: '2 files left in its DLQ (stopping)' });
  t.equal(proxy.puts.length, 1, 'the second file not tried');
  t.ok(files.every((f) => existsSync(f)), 'both files kept');
  const stored = await storedKeys();
  t.notOk(keys.some((k) => stored.has(k)));
  t.equal(await a.adopted(), 0);
});

t.test('stop() during the replay hurries it, and the directory is not removed even with nothing left in it', async (t) => {
  const root = tempDir(t, 'root');
  const { dir } = instanceDir(t, root, 'dead', { wal: true });
  let entered = () => {};
  const inReplay = new Promise<void>((resolve) => (entered = resolve));
  const a = adopter(t, root, async (_walDir, _deadId, stopped) => {
    entered();
    await stopped; // the server's replay closes its pipeline by this
    return 0;
  });
  await inReplay;
  await a.adopting.stop();
  t.match((await a.waitFor(notFinished(dir))).err, { message: 'stopping' });
  t.ok(existsSync(dir));
  t.equal(await a.adopted(), 0);
});

t.test('a shared root that cannot be read is logged, not thrown', async (t) => {
  const parent = tempDir(t, 'root');
  const root = join(parent, 'not-a-directory');
  writeFileSync(root, 'a file');
  const a = adopter(t, root, async () => 0);
  const line = await a.waitFor((l) => l.msg === 'shared root unreadable; will look again');
  t.match(line, { level: 40, root, err: { code: 'ENOTDIR' } });
});
