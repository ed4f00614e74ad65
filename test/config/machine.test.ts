// What the defaults of WORKERS and INSTANCE_ID are derived from beyond the environment: the cores
// the container's cgroup quota allows (read from a cgroup tree of the test's own), and this host.
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { containerCores, THIS_MACHINE } from '../../src/config/machine.js';
import { tempDir } from '../helpers/temp.js';

t.test('containerCores, for WORKERS\' default on a real machine: the CPU quota of the cgroup, rounded down, within the CPUs the process may run on; 1 with no quota in sight', async (t) => {
  const root = (files: Record<string, string>): string => {
    const dir = tempDir(t, 'cgroup');
    for (const [name, text] of Object.entries(files)) {
      mkdirSync(join(dir, name, '..'), { recursive: true });
      writeFileSync(join(dir, name), `${text}\n`);
    }
    return dir;
  };
  t.equal(containerCores(root({ 'cpu.max': '200000 100000' }), 8), 2, 'v2: 2 vCPU (a Fargate task of 2 vCPU on a larger host)');
  t.equal(containerCores(root({ 'cpu.max': '150000 100000' }), 8), 1, 'v2: 1.5 rounds down (as libuv does for os.availableParallelism)');
  t.equal(containerCores(root({ 'cpu.max': '50000 100000' }), 8), 1, 'v2: half a core is 1');
  t.equal(containerCores(root({ 'cpu.max': '800000 100000' }), 2), 2, 'v2: no more than the CPUs it may run on');
  t.equal(containerCores(root({ 'cpu.max': 'max 100000' }), 8), 1, 'v2: no quota in sight: 1, not the host\'s count');
  t.equal(containerCores(root({ 'cpu/cpu.cfs_quota_us': '300000', 'cpu/cpu.cfs_period_us': '100000' }), 8), 3, 'v1 (cpu controller directory)');
  t.equal(containerCores(root({ 'cpu.cfs_quota_us': '100000', 'cpu.cfs_period_us': '100000' }), 8), 1, 'v1 (controller mounted at the root)');
  t.equal(containerCores(root({ 'cpu/cpu.cfs_quota_us': '-1', 'cpu/cpu.cfs_period_us': '100000' }), 8), 1, 'v1: no quota: 1');
  t.equal(containerCores(root({}), 4), 1, 'no cgroup files: 1');
});

t.test('containerCores: v2 wins over v1 where both show, and what cannot be read as a quota is no quota', async (t) => {
  const root = (files: Record<string, string>): string => {
    const dir = tempDir(t, 'cgroup');
    for (const [name, text] of Object.entries(files)) {
      mkdirSync(join(dir, name, '..'), { recursive: true });
      writeFileSync(join(dir, name), text);
    }
    return dir;
  };
  t.equal(containerCores(root({ 'cpu.max': '400000 100000', 'cpu/cpu.cfs_quota_us': '100000', 'cpu/cpu.cfs_period_us': '100000' }), 8), 4, 'cpu.max read first');
  t.equal(containerCores(root({ 'cpu/cpu.cfs_quota_us': '200000', 'cpu.cfs_quota_us': '700000', 'cpu/cpu.cfs_period_us': '100000' }), 8), 2, 'v1: the controller directory before the root');
  t.equal(containerCores(root({ 'cpu.max': '' }), 8), 1, 'an empty cpu.max');
  t.equal(containerCores(root({ 'cpu.max': 'lots 100000' }), 8), 1, 'a quota that is not a number');
  t.equal(containerCores(root({ 'cpu.max': '200000 0' }), 8), 1, 'a period of 0');
  t.equal(containerCores(root({ 'cpu.max': '0 100000' }), 8), 1, 'a quota of 0');
  t.equal(containerCores(root({ 'cpu/cpu.cfs_quota_us': '300000' }), 8), 1, 'v1 quota with no period');
});

t.test('containerCores with no arguments reads this machine: at least 1, at most the CPUs it may run on', async (t) => {
  const cores = containerCores();
  t.ok(Number.isInteger(cores) && cores >= 1 && cores <= os.availableParallelism(), `${cores} of ${os.availableParallelism()}`);
});

t.test('THIS_MACHINE: the cgroup\'s cores and this host\'s name', async (t) => {
  t.equal(THIS_MACHINE.cores(), containerCores());
  t.equal(THIS_MACHINE.hostname(), os.hostname());
});
