// What defaults are derived from beyond the environment: the container's CPU quota and the host
// name. loadConfig takes it as an argument, so that tests give their own.
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface Machine {
  /** The cores this process may use (containerCores). */
  cores(): number;
  hostname(): string;
}

export const THIS_MACHINE: Machine = { cores: () => containerCores(), hostname: () => os.hostname() };

/**
 * The cores this process may use, for the default of WORKERS: its CPU quota (cgroup v2 cpu.max,
 * else cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us) rounded down, at least 1, within
 * os.availableParallelism() (the CPUs it may run on). With no quota in sight, 1: never the host's
 * count, which says nothing of what a container may use (ECS sets a task's CPU limit on the task's
 * cgroup, above the container's, where no quota shows: its task definitions set WORKERS).
 */
export function containerCores(cgroupRoot = '/sys/fs/cgroup', cpus = os.availableParallelism()): number {
  const read = (file: string): string | undefined => {
    try {
      return readFileSync(path.join(cgroupRoot, file), 'utf8').trim();
    } catch {
      return undefined;
    }
  };
  const v2 = read('cpu.max')?.split(/\s+/);
  const [quota, period] = v2 ?? [read('cpu/cpu.cfs_quota_us') ?? read('cpu.cfs_quota_us'), read('cpu/cpu.cfs_period_us') ?? read('cpu.cfs_period_us')];
  // "max" (v2) or -1 (v1): no quota.
  const cores = Math.floor(Number(quota) / Number(period));
  if (!Number.isFinite(cores) || Number(quota) <= 0) return 1;
  return Math.max(1, Math.min(cores, cpus));
}
