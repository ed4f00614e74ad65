// The operator command on the server's DLQ_DIR, `npm run dlq -- stats | list | drain`, as a
// function of its arguments, environment and output streams (./cli.ts is the process around it);
// only the AWS SDK still takes region and credentials from the process's own environment.
// `stats` and `list` only read, so they are safe beside a running server. `drain` takes the
// directory's lock like a server (and refuses while one holds it), then PUTs each file to its
// original key as the server would, except that it never overwrites an object it did not write
// (./guard.ts). Names and keys come from files anyone with access to the volume may have made, so
// they are printed escaped: no control character reaches the terminal.
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { type Config, ConfigError, loadConfig } from '../config.js';
import { LocalModeUnavailable } from '../local-s3.js';
import { createLogger, type LogTo } from '../log.js';
import { createDlqMetrics, type DlqMetrics } from '../metrics/dlq.js';
import { createUploadMetrics } from '../metrics/upload.js';
import { connectS3, LOCAL_DATA_DIR, NoRegion, uploaderFor } from '../upload/connect.js';
import { drain, type Drained } from './drain.js';
import { headObject, OverwriteGuard } from './guard.js';
import { DlqLocked, DlqStore, type QueuedFile } from './store.js';

const USAGE = `usage: npm run dlq -- <command>
  stats   files, events and bytes queued, and the oldest file's age
  list    one line per file, oldest first: spilled at, events, bytes, key
  drain   upload every file to S3 at its original key, oldest first, deleting each once stored;
          a file S3 refuses is kept and skipped, and no object this server did not write is overwritten
  --help  this text
Reads DLQ_DIR and the S3 settings from the same environment variables as the server.`;

const COMMANDS = ['stats', 'list', 'drain'] as const;
type Command = (typeof COMMANDS)[number];

/** Where the command writes: its answer to `stdout`, what went wrong and its log lines (JSON, as the server's) to `stderr`. */
export interface CommandOutput {
  readonly stdout: { write(text: string): unknown };
  readonly stderr: { write(text: string): unknown };
  /** The log lines' destination: stderr's file descriptor in the process, else a stream. */
  readonly log: LogTo;
}

/** Runs the command; resolves the exit code: 0 done, 1 a failure (said on stdout or stderr), 2 a usage error. */
export async function runDlqCommand(args: readonly string[], env: NodeJS.ProcessEnv, output: CommandOutput): Promise<number> {
  try {
    return await run(args[0], env, output);
  } catch (err) {
    if (!(err instanceof ConfigError || err instanceof LocalModeUnavailable || err instanceof NoRegion || err instanceof DlqLocked)) throw err;
    output.stderr.write(`${err instanceof ConfigError ? 'invalid configuration: ' : ''}${err.message}\n`);
    return 1;
  }
}

async function run(argument: string | undefined, env: NodeJS.ProcessEnv, output: CommandOutput): Promise<number> {
  const print = (text: string) => output.stdout.write(`${text}\n`);
  if (argument === '--help' || argument === '-h' || argument === 'help') {
    print(USAGE);
    return 0;
  }
  if (!COMMANDS.includes(argument as Command)) {
    output.stderr.write(`${argument === undefined ? 'no command given' : `unknown command: ${JSON.stringify(argument)}`}\n${USAGE}\n`);
    return 2;
  }
  const command = argument as Command;
  const config = loadConfig(env);
  const log = createLogger(output.log, { level: config.logLevel, base: { instance: config.instanceId } });
  if (command === 'drain' && config.s3.bucket === undefined) {
    // The first line, as the server's: a drain meant for a real bucket must not go to a local directory unnoticed.
    log.warn(`LOCAL MODE: S3_BUCKET is not set, so drained files go to an embedded S3-compatible server with data under ./${LOCAL_DATA_DIR}. Not for production: set S3_BUCKET.`);
  }
  const registry = new Registry();
  const metrics = createDlqMetrics(registry);
  const store = await openStore(config, command === 'drain', metrics, log);
  try {
    if (store.unusable !== undefined) {
      // An empty answer here would read as "nothing queued": say the directory could not be read.
      output.stderr.write(`DLQ_DIR ${config.dlqDir} could not be scanned: ${store.unusable}; nothing was read or uploaded\n`);
      return 1;
    }
    if (command === 'stats') return stats(config.dlqDir, store, print);
    if (command === 'list') return list(config.dlqDir, store, print);
    return await drainAll(config, store, { registry, metrics, log, print });
  } finally {
    store.close();
  }
}

/** `drain` owns the directory (lock, repair) as a server would; `stats` and `list` only read. */
function openStore(config: Config, owner: boolean, metrics: DlqMetrics, log: Logger): Promise<DlqStore> {
  return DlqStore.open(
    {
      dir: config.dlqDir,
      maxBytes: config.dlqMaxBytes,
      maxFiles: config.dlqMaxFiles,
      whenFull: config.dlqWhenFull,
      ttlSeconds: config.dlqTtlSeconds,
      now: Date.now,
      repair: owner,
      prefix: config.s3.prefix,
      instanceId: `dlq-drain@${config.instanceId}`,
    },
    metrics,
    log,
  );
}

function stats(dir: string, store: DlqStore, print: (text: string) => void): number {
  const oldest = store.oldestSpilledAt;
  const age = oldest === undefined ? '-' : `${Math.round((Date.now() - oldest) / 1000)} s (spilled ${new Date(oldest).toISOString()})`;
  print(`dir     ${dir}\nfiles   ${store.files}\nevents  ${store.events}\nbytes   ${store.bytes}\noldest  ${age}`);
  return 0;
}

function list(dir: string, store: DlqStore, print: (text: string) => void): number {
  // No output at all would leave the operator wondering whether it ran.
  if (store.files === 0) print(`DLQ is empty: no files in ${dir}`);
  for (const file of store.list()) {
    print(`${new Date(file.meta.spilledAt).toISOString()}  events=${file.meta.events}  bytes=${file.bytes}  key=${shown(file.meta.key)}  file=${shown(file.name)}`);
  }
  return 0;
}

/** Every file, oldest first, each said as it goes; 1 when any is left for a reason (skipped or not tried). */
async function drainAll(config: Config, store: DlqStore, { registry, metrics, log, print }: { registry: Registry; metrics: DlqMetrics; log: Logger; print: (text: string) => void }): Promise<number> {
  const target = await connectS3(config);
  try {
    const uploader = uploaderFor(target, config, createUploadMetrics(registry), log);
    const guard = new OverwriteGuard(config.s3.prefix, headObject(target.client, target.bucket, config.uploadTimeoutMs), config.objectKey);
    const summary = await drain(store, uploader, { metrics, log, guard, onFile: (file, drained) => {
        const line = drainedLine(file, drained);
        if (line !== undefined) print(line);
      },
    });
    print(`drained ${summary.stored} files, ${summary.events} events; ${store.files} files left`);
    if (summary.stopped !== undefined) print(`stopped: ${summary.stopped}; the files not tried are kept`);
    return summary.unreadable + summary.failed + summary.kept > 0 || summary.stopped !== undefined ? 1 : 0;
  } finally {
    target.client.destroy();
    await target.local?.close();
  }
}

/** The line said for one file of a drain; none for a file gone or aborted (the log says why). */
function drainedLine(file: QueuedFile, drained: Drained): string | undefined {
  switch (drained.result) {
    case 'stored':
      return `DLQ → RAW success: ${shown(drained.key)} events=${drained.events}${drained.already ? ' (already in S3: not PUT again)' : ''}`;
    case 'unreadable':
      return `unreadable: ${shown(file.name)}: ${shown(drained.error.message)}; skipped, the file is kept (check its owner and mode, and the volume)`;
    case 'failed':
      return `failed: ${shown(drained.key)}: ${shown(drained.error.message)}; skipped, the file is kept`;
    case 'kept':
      return `kept: ${shown(drained.key)} (file ${shown(file.name)}): ${shown(drained.reason)}`;
    default:
      return undefined;
  }
}

// C0 and C1 controls, DEL, the backslash (so that an escape reads one way only), and the Unicode
// line separators and direction overrides that can make a terminal show another line than it got.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\\\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** A name or key as printed: a file name may hold any byte but `/` and NUL, a key anything. */
function shown(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const code = c.codePointAt(0)!;
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
  });
}
