// The power-loss disk's revert rules, on real files through the disk layer: after a cut, a file's
// data is what its last fsync (or an O_DSYNC write) left, and a directory's entries what its last
// fsync left; every call after the cut is refused, the one at the cut point is never made.
import { constants as fsConstants, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { Disk } from '../../src/disk/disk.js';
import { Random } from '../chaos/random.js';
import type { Owner } from './fault-proxy.js';
import { PowerCut, PowerLossDisk, type PowerLossOptions } from './power-loss-disk.js';
import { tempDir } from './temp.js';

function rig(t: Owner, cutAt?: PowerLossOptions['cutAt'], seed = 1) {
  const dir = tempDir(t, 'power');
  const power = new PowerLossDisk({ cutAt, random: new Random(seed) });
  return { dir, power, disk: new Disk(power.fs) };
}

const names = (dir: string) => readdirSync(dir).sort();

t.test('a new file is lost with its directory entry unless the directory was fsynced; its data needs its own fsync', async (t) => {
  const { dir, power, disk } = rig(t);
  writeFileSync(join(dir, 'old'), 'before');
  await disk.writeNew(join(dir, 'synced'), 'data fsynced');
  await disk.syncDir(dir);
  await disk.writeNew(join(dir, 'entry-not-synced'), 'data fsynced, entry not');
  const handle = await disk.open(join(dir, 'old'), fsConstants.O_WRONLY | fsConstants.O_APPEND);
  await handle.write(' and after, never fsynced');
  await power.cut();
  t.same(names(dir), ['old', 'synced'], 'the file created after the last directory fsync is gone');
  t.equal(readFileSync(join(dir, 'synced'), 'utf8'), 'data fsynced');
  t.equal(readFileSync(join(dir, 'old'), 'utf8'), 'before', 'what was there at the start is durable, the write after it is not');
});

t.test('a file made but never fsynced keeps its entry (the directory was) and loses its data', async (t) => {
  const { dir, power, disk } = rig(t);
  const handle = await disk.open(join(dir, 'a'), fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY);
  await handle.writeFile('never fsynced');
  await disk.syncDir(dir);
  await power.cut();
  t.same(names(dir), ['a']);
  t.equal(readFileSync(join(dir, 'a'), 'utf8'), '');
});

t.test('a write to an O_DSYNC handle is durable once it returns; the new file\'s name needs the directory fsync', async (t) => {
  const { dir, power, disk } = rig(t);
  const flags = fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_DSYNC;
  const seg = await disk.open(join(dir, 'seg'), flags);
  await disk.syncDir(dir);
  await seg.writev([Buffer.from('one '), Buffer.from('two')]);
  const lost = await disk.open(join(dir, 'lost'), flags);
  await lost.write('written with O_DSYNC');
  await power.cut();
  t.same(names(dir), ['seg']);
  t.equal(readFileSync(join(dir, 'seg'), 'utf8'), 'one two');
});

t.test('a rename or an unlink is undone without the directory fsync; writeAtomic and remove, which fsync it, stay', async (t) => {
  const { dir, power, disk } = rig(t);
  writeFileSync(join(dir, 'moved'), 'm');
  writeFileSync(join(dir, 'unlinked'), 'u');
  writeFileSync(join(dir, 'removed'), 'r');
  writeFileSync(join(dir, 'replaced'), 'old');
  await disk.remove(dir, 'removed');
  await disk.writeAtomic(dir, 'replaced', 'new', { temp: '.tmp-replaced' });
  await disk.writeAtomic(dir, 'made', 'whole', { temp: '.tmp-made' });
  await power.fs.rename(join(dir, 'moved'), join(dir, 'renamed'));
  await power.fs.unlink(join(dir, 'unlinked'));
  await power.fs.rename(join(dir, 'made'), join(dir, 'replaced'));
  await power.cut();
  t.same(names(dir), ['made', 'moved', 'replaced', 'unlinked']);
  t.equal(readFileSync(join(dir, 'unlinked'), 'utf8'), 'u', 'back with its content');
  t.equal(readFileSync(join(dir, 'replaced'), 'utf8'), 'new', 'the file a rename replaced, not synced, is back');
  t.equal(readFileSync(join(dir, 'made'), 'utf8'), 'whole');
});

t.test('between two directories each side follows its own fsync; a directory made and not synced goes with its files', async (t) => {
  const { dir, power, disk } = rig(t);
  const sub = await disk.subdir(dir, 'sub');
  await disk.syncDir(dir);
  writeFileSync(join(dir, 'a'), 'a');
  await power.fs.rename(join(dir, 'a'), join(sub, 'a'));
  await disk.syncDir(sub); // the new name is durable, the old one's removal is not
  const gone = await disk.subdir(dir, 'gone');
  await disk.writeAtomic(gone, 'f', 'f', { temp: '.tmp-f' });
  await power.cut();
  t.same(names(dir), ['a', 'sub']);
  t.same(names(sub), ['a']);
  t.equal(readFileSync(join(sub, 'a'), 'utf8'), 'a');
});

t.test('the operation the cut falls before is never made, and every call after it is refused', async (t) => {
  const { dir, power, disk } = rig(t, (op) => op.name === 'unlink');
  writeFileSync(join(dir, 'kept'), 'k');
  await t.rejects(disk.remove(dir, 'kept'), PowerCut);
  await power.reverted;
  t.match(power.cutBefore, { name: 'unlink', path: join(dir, 'kept') });
  t.ok(existsSync(join(dir, 'kept')));
  await t.rejects(disk.writeNew(join(dir, 'later'), 'x'), PowerCut);
  await t.rejects(power.fs.readdir(dir), PowerCut);
  t.same(names(dir), ['kept']);
});

t.test('an O_DSYNC write in flight at the cut leaves a prefix of its bytes (none, some or all), and its caller hears nothing of it', async (t) => {
  const lengths = new Set<number>();
  for (let seed = 1; seed <= 12; seed++) {
    const { dir, power, disk } = rig(t, undefined, seed);
    const seg = await disk.open(join(dir, 'seg'), fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_DSYNC);
    await disk.syncDir(dir);
    await seg.write('durable|');
    const inFlight = seg.write('in flight at the cut');
    const reverted = power.cut();
    await t.rejects(inFlight, PowerCut);
    await reverted;
    const left = readFileSync(join(dir, 'seg'), 'utf8');
    t.ok('durable|in flight at the cut'.startsWith(left) && left.startsWith('durable|'), `seed ${seed}: ${JSON.stringify(left)}`);
    lengths.add(left.length);
  }
  t.ok(lengths.size > 2, 'torn at several places');
});

// Two fsyncs of one directory (or file) that overlap, the WAL's segment removal and its next
// segment's creation: whichever returns last, what the later one made durable stays durable. Which
// returns last is the thread pool's choice, not ours: in about one round in a hundred the earlier
// one does, and 300 rounds see it. (This once lost a new segment's acknowledged events in
// power-loss.ops, a defect of this model, not of the WAL.)
t.test('an fsync that returns after a later one never takes back what the later one made durable', async (t) => {
  const flags = fsConstants.O_CREAT | fsConstants.O_WRONLY | fsConstants.O_APPEND;
  const lost: string[] = [];
  for (let round = 0; round < 300; round++) {
    const { dir, power, disk } = rig(t, undefined, round);
    const file = await disk.open(join(dir, 'file'), flags);
    await disk.syncDir(dir);
    await file.write('one|');
    const [earlierDir, earlierFile] = [disk.syncDir(dir), file.sync()];
    const made = await disk.open(join(dir, 'made'), flags);
    await file.write('two|');
    await Promise.all([disk.syncDir(dir), file.sync()]);
    await Promise.all([earlierDir, earlierFile, made.close(), file.close()]);
    await power.cut();
    if (!names(dir).includes('made')) lost.push(`round ${round}: the new entry`);
    if (readFileSync(join(dir, 'file'), 'utf8') !== 'one|two|') lost.push(`round ${round}: the second write`);
  }
  t.same(lost, []);
});

t.test("a cut 'during' an operation starts it and cuts the power while it is in flight: an O_DSYNC write keeps a prefix of its bytes", async (t) => {
  const lengths = new Set<number>();
  for (let seed = 1; seed <= 12; seed++) {
    const { dir, power, disk } = rig(t, (op) => (op.name === 'write' ? 'during' : false), seed);
    writeFileSync(join(dir, 'seg'), 'durable|');
    const seg = await disk.open(join(dir, 'seg'), fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_DSYNC);
    await t.rejects(seg.write('in flight at the cut'), PowerCut, 'its caller hears nothing of it');
    await power.reverted;
    t.match(power, { cutBefore: { name: 'write' }, cutInFlight: true });
    const left = readFileSync(join(dir, 'seg'), 'utf8');
    t.ok('durable|in flight at the cut'.startsWith(left) && left.startsWith('durable|'), `seed ${seed}: ${JSON.stringify(left)}`);
    lengths.add(left.length);
  }
  t.ok(lengths.size > 2, 'torn at several places');
});
