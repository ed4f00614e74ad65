// Processes for a run, pinned to cores: the server under test and the baselines on one core, the
// load generator, S3 server and this script on another, so the figures mean "per core".
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';

const hasTaskset = (() => {
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' });
    return os.cpus().length >= 2;
  } catch {
    return false;
  }
})();

export const PINNING = hasTaskset ? 'server on core 0; load generator, S3 server and bench on core 1' : 'not pinned (taskset missing or one core)';
export const SERVER_CORE = '0';
export const LOAD_CORE = '1';

/** Pins this process (and so what it spawns unpinned) to the load generator's core. */
export function pinSelf(): void {
  if (hasTaskset) execFileSync('taskset', ['-pc', LOAD_CORE, String(process.pid)], { stdio: 'ignore' });
}

/** A command line that runs on `core` when pinning is available. */
export function pinned(core: string, command: string, args: string[]): [string, string[]] {
  return hasTaskset ? ['taskset', ['-c', core, command, ...args]] : [command, args];
}

/** What /proc tells of a process: ours, or one given with --target-pid. */
export interface Usage {
  /** User + system CPU seconds so far, all its threads. */
  cpuSeconds(): number;
  /** Peak resident set size since it started (VmHWM), in bytes. */
  peakRssBytes(): number;
}

export interface Proc extends Usage {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly lines: string[];
  stop(): Promise<void>;
}

const TICKS_PER_SECOND = 100; // Linux USER_HZ

/** Each thread of a process other than the main one: its name and its user + system CPU seconds so far. */
export function otherThreads(pid: number): { tid: string; name: string; seconds: number }[] {
  return readdirSync(`/proc/${pid}/task`)
    .filter((tid) => tid !== String(pid))
    .flatMap((tid) => {
      try {
        const fields = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' ');
        const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
        return [{ tid, name, seconds: (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND }];
      } catch {
        return []; // the thread ended between the listing and the read
      }
    });
}

/**
 * A process's main thread alone (its thread id is the process id), from the scheduler's
 * statistics: seconds on a CPU, and seconds runnable but waiting for one (another thread had it).
 */
export function mainThreadSchedule(pid: number): { runSeconds: number; waitSeconds: number } {
  const [run, wait] = readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ').map(Number);
  return { runSeconds: run! / 1e9, waitSeconds: wait! / 1e9 };
}

/** `check` runs before each CPU reading, so that a dead process fails loudly instead of reading 0. */
export function usage(pid: number, check: () => void = () => {}): Usage {
  return {
    cpuSeconds() {
      check();
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
    },
    peakRssBytes() {
      const status = `/proc/${pid}/status`;
      return existsSync(status) ? Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(status, 'utf8'))![1]) * 1024 : 0;
    },
  };
}

export async function start(core: string, command: string, args: string[], env: NodeJS.ProcessEnv, ready: (line: string) => boolean): Promise<Proc> {
  const [cmd, cmdArgs] = pinned(core, command, args);
  const child = spawn(cmd, cmdArgs, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  let notReady: NodeJS.Timeout | undefined;
  await new Promise<void>((resolve, reject) => {
    let pending = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      pending += d;
      for (let nl = pending.indexOf('\n'); nl !== -1; nl = pending.indexOf('\n')) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        lines.push(line);
        if (ready(line)) resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`${command} ${args.join(' ')} exited (${code}) before it was ready: ${stderr.slice(-2000)}`)));
    notReady = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} ${args.join(' ')} not ready within 30 s; it printed: ${lines.slice(-5).join(' | ')} ${stderr.slice(-1000)}`));
    }, 30_000);
  }).finally(() => clearTimeout(notReady));
  // taskset execs the command, so the pid is the command's own.
  const pid = child.pid!;
  const alive = (): void => {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${command} ${args.join(' ')} died (exit ${child.exitCode}, signal ${child.signalCode}): ${stderr.slice(-3000)}`);
    }
  };
  return {
    child,
    pid,
    lines,
    ...usage(pid, alive),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const exited = once(child, 'exit');
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
