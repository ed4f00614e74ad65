// Operator command on the server's DLQ_DIR: `npm run dlq -- stats | list | drain`.
// `stats` and `list` only read, so they are safe beside a running server. `drain` takes the
// directory's lock like a server (and refuses while one holds it), then PUTs each file to its
// original key, the same as the server would.
import { Registry } from 'prom-client';
import { ConfigError, loadConfig } from '../config.js';
import { LocalModeUnavailable } from '../local-s3.js';
import { createLogger } from '../log.js';
import { createDlqMetrics } from '../metrics/dlq.js';
import { createUploadMetrics } from '../metrics/upload.js';
import { connectS3, LOCAL_DATA_DIR, NoRegion } from '../upload/connect.js';
import { S3Uploader } from '../upload/s3.js';
import { DlqLocked, DlqStore } from './store.js';

const USAGE = `usage: npm run dlq -- <command>
  stats   files, events and bytes queued, and the oldest file's age
  list    one line per file, oldest first: spilled at, events, bytes, key
  drain   upload every file to S3 at its original key, oldest first, deleting each once stored
  --help  this text
Reads DLQ_DIR and the S3 settings from the same environment variables as the server.`;

async function run(command: string | undefined): Promise<number> {
  if (command === '--help' || command === '-h' || command === 'help') {
    print(USAGE);
    return 0;
  }
  if (command !== 'stats' && command !== 'list' && command !== 'drain') {
    process.stderr.write(`${command === undefined ? 'no command given' : `unknown command: ${JSON.stringify(command)}`}\n${USAGE}\n`);
    return 2;
  }
  const config = loadConfig();
  // Log lines (JSON, as the server writes them) go to stderr; the command's answer to stdout.
  const log = createLogger(2, { level: config.logLevel, base: { instance: config.instanceId } });
  if (command === 'drain' && config.s3.bucket === undefined) {
    // The first line, as the server's: a drain meant for a real bucket must not go to a local directory unnoticed.
    log.warn(`LOCAL MODE: S3_BUCKET is not set, so drained files go to an embedded S3-compatible server with data under ./${LOCAL_DATA_DIR}. Not for production: set S3_BUCKET.`);
  }
  const registry = new Registry();
  const dlqMetrics = createDlqMetrics(registry);
  const store = await DlqStore.open(
    {
      dir: config.dlqDir,
      maxBytes: config.dlqMaxBytes,
      maxFiles: config.dlqMaxFiles,
      ttlSeconds: config.dlqTtlSeconds,
      now: Date.now,
      repair: command === 'drain',
      prefix: config.s3.prefix,
      instanceId: `dlq-drain@${config.instanceId}`,
    },
    dlqMetrics,
    log,
  );
  if (store.unusable !== undefined) {
    // An empty answer here would read as "nothing queued": say the directory could not be read.
    process.stderr.write(`DLQ_DIR ${config.dlqDir} could not be scanned: ${store.unusable}; nothing was read or uploaded\n`);
    return 1;
  }
  const now = Date.now();
  if (command === 'stats') {
    const oldest = store.oldestSpilledAt;
    const age = oldest === undefined ? '-' : `${Math.round((now - oldest) / 1000)} s (spilled ${new Date(oldest).toISOString()})`;
    print(`dir     ${config.dlqDir}\nfiles   ${store.files}\nevents  ${store.events}\nbytes   ${store.bytes}\noldest  ${age}`);
    return 0;
  }
  if (command === 'list') {
    // No output at all would leave the operator wondering whether it ran.
    if (store.files === 0) print(`DLQ is empty: no files in ${config.dlqDir}`);
    for (const file of store.list()) {
      print(`${new Date(file.meta.spilledAt).toISOString()}  events=${file.meta.events}  bytes=${file.bytes}  key=${file.meta.key}  file=${file.name}`);
    }
    return 0;
  }

  const target = await connectS3(config);
  const uploader = new S3Uploader(target.client, { bucket: target.bucket, object: config.s3.object, maxAttempts: config.uploadMaxAttempts, timeoutMs: config.uploadTimeoutMs }, createUploadMetrics(registry), log);
  let files = 0;
  let events = 0;
  let failed = false;
  let unreadable = 0;
  try {
    for (let file = store.oldest(); file !== undefined && !failed; file = store.oldest()) {
      file.busy = true; // taken once: a file that fails stays busy, so the loop moves on
      let object;
      try {
        object = await store.read(file);
      } catch (err) {
        print(`unreadable: ${file.name}: ${(err as Error).message}; skipped, the file is kept (check its owner and mode, and the volume)`);
        unreadable++;
        continue;
      }
      if (object === undefined) continue; // gone (the server took it) or corrupt (logged, skipped)
      try {
        await uploader.put({ key: object.meta.key, body: object.gzip, events: object.meta.events });
      } catch (err) {
        print(`failed: ${object.meta.key}: ${(err as Error).message}; stopping, the file is kept`);
        failed = true;
        continue;
      }
      await store.delete(file, 'reuploaded');
      print(`DLQ → RAW success: ${object.meta.key} events=${object.meta.events}`);
      files++;
      events += object.meta.events;
    }
  } finally {
    store.close();
    target.client.destroy();
    await target.local?.close();
  }
  print(`drained ${files} files, ${events} events; ${store.files} files left`);
  return failed || unreadable > 0 ? 1 : 0;
}

function print(text: string): void {
  process.stdout.write(`${text}\n`);
}

try {
  process.exitCode = await run(process.argv[2]);
} catch (err) {
  if (!(err instanceof ConfigError || err instanceof LocalModeUnavailable || err instanceof NoRegion || err instanceof DlqLocked)) throw err;
  process.stderr.write(`${err instanceof ConfigError ? 'invalid configuration: ' : ''}${err.message}\n`);
  process.exitCode = 1;
}
