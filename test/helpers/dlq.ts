// A DLQ store on a real temp directory with a log and metrics a test can read, batches and files to
// spill, and the `dlq` command.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { Registry } from 'prom-client';
import type { Test } from 'tap';
import type * as CommandModule from '../../src/dlq/command.js';
import { encodeFile } from '../../src/dlq/file.js';
import { DlqStore, type DlqOptions } from '../../src/dlq/store.js';
import { createDlqMetrics } from '../../src/metrics/dlq.js';
import { baseEnv, ROOT, type RunAs, useSdkVariables } from './server.js';
import { memoryLog } from './log.js';
import { tempDir } from './temp.js';

export const T0 = 1_800_000_000_000;

export async function setup(t: Test, options: Partial<DlqOptions> = {}) {
  const clock = { now: T0 };
  const { log, lines: logs } = memoryLog();
  const registry = new Registry();
  const metrics = createDlqMetrics(registry);
  const dir = options.dir ?? tempDir(t, 'dlq');
  const open = async () => {
    const store = await DlqStore.open({ dir, maxBytes: 1 << 30, maxFiles: 1000, whenFull: 'evict', ttlSeconds: 3600, now: () => clock.now, repair: true, prefix: 'raw', instanceId: 'test', ...options }, metrics, log);
    t.teardown(() => store.close());
    return store;
  };
  const store = await open();
  const value = async (name: string, labels = '') => {
    const line = (await registry.metrics()).split('\n').find((l) => l.startsWith(`${name}${labels} `));
    return line === undefined ? 0 : Number(line.split(' ').pop());
  };
  return { store, dir, clock, logs, value, open };
}

let seq = 0;
export function batch(events: number, at = T0) {
  const id = `${at}-unit-000000-${(seq++).toString(36).padStart(8, '0')}`;
  const lines = Array.from({ length: events }, (_, i) => `{"received_at":${at},"event":{"i":${i}}}\n`).join('');
  return { batch: { id, key: `raw/2027/01/15/08/${id}.jsonl.gz`, events, firstReceivedAt: at, lastReceivedAt: at }, gzip: gzipSync(lines), lines };
}


/**
 * Writes a DLQ file as a server would, holding events `{"id":<id>}`; the name is `<id>.jsonl.gz`
 * and the key `raw/2027/01/15/08/<id>.jsonl.gz` unless given. Returns the key.
 */
export function writeDlqFile(dir: string, id: string, ids: number[], key = `raw/2027/01/15/08/${id}.jsonl.gz`, spilledAt = T0): string {
  const lines = ids.map((i) => `{"received_at":${T0},"event":{"id":${i}}}\n`).join('');
  writeFileSync(join(dir, `${id}.jsonl.gz`), encodeFile(gzipSync(lines), { key, events: ids.length, firstReceivedAt: T0, lastReceivedAt: T0, spilledAt }));
  return key;
}

/**
 * Runs the dlq command in this process (the build's src/dlq/command.ts, as `npm run dlq` runs it)
 * with only `env` (and an S3 server's SDK variables, as useSdkVariables); never throws for an exit
 * code. What needs a process of its own (another user, the working directory of local mode) is
 * runDlqCommand's.
 */
export async function dlqCommand(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  if (env.S3_BUCKET === undefined && args[0] === 'drain') throw new Error('local mode writes under the working directory: use runDlqCommand');
  useSdkVariables(env);
  const { runDlqCommand: run } = (await import(`${ROOT}dist/dlq/command.js`)) as typeof CommandModule;
  let stdout = '';
  let stderr = '';
  const stderrStream = { write: (text: string) => (stderr += text) };
  const code = await run(args, { ...env }, { stdout: { write: (text: string) => (stdout += text) }, stderr: stderrStream, log: stderrStream });
  return { code, stdout, stderr };
}

/** Runs `npm run dlq -- <args>` (the built command) in a process of its own with only `env`; never throws for an exit code. */
export async function runDlqCommand(t: Test, args: string[], env: Record<string, string>, runAs: RunAs = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [join(ROOT, 'dist', 'dlq', 'cli.js'), ...args], { env: baseEnv(env), cwd: tempDir(t, 'cwd'), ...runAs });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** A DLQ-shaped gzip file whose "EI" header field holds `json` as is (valid or not), around one line. */
export function dlqFileWithMeta(json: string): Buffer {
  const gzip = gzipSync('{"received_at":0,"event":{}}\n');
  const meta = Buffer.from(json);
  const extra = Buffer.alloc(6);
  extra.writeUInt16LE(4 + meta.length, 0); // XLEN
  extra.write('EI', 2);
  extra.writeUInt16LE(meta.length, 4);
  const header = Buffer.from(gzip.subarray(0, 10));
  header[3] = 0x04; // FEXTRA
  return Buffer.concat([header, extra, meta, gzip.subarray(10)]);
}

/** Three good files in `dir` (ids 0..5), oldest first; returns their keys. */
export function goodFiles(dir: string): string[] {
  return [0, 1, 2].map((n) => writeDlqFile(dir, `good-${n}`, [n * 2, n * 2 + 1], undefined, T0 + n));
}
