// Reads config, builds each part with its slice of config, logger and metrics, listens, and closes in order.
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { Logger } from 'pino';
import { type Config, ConfigError, loadConfig } from './config.js';
import { httpEngine, IngestServer } from './ingest/server.js';
import { IngestWorkers } from './ingest/workers.js';
import { uwsLoadError } from './ingest/uws.js';
import { Reuploader } from './dlq/reupload.js';
import { DlqLocked, DlqStore } from './dlq/store.js';
import { LocalModeUnavailable } from './local-s3.js';
import { createLogger } from './log.js';
import { createDlqMetrics, observeDlq } from './metrics/dlq.js';
import { observeBuild } from './metrics/build.js';
import { startEmf } from './metrics/emf.js';
import { createHttpMetrics } from './metrics/http.js';
import { observePreflight } from './metrics/preflight.js';
import { createUploadMetrics, observeQueueDepths, observeS3Failing } from './metrics/upload.js';
import { Pipeline, type PipelineOptions } from './pipeline.js';
import { shutDownOnSignals } from './shutdown.js';
import { connectS3, LOCAL_DATA_DIR, NoRegion, type S3Target } from './upload/connect.js';
import type { Spill } from './upload/loop.js';
import { preflightS3 } from './upload/preflight.js';
import { S3Uploader } from './upload/s3.js';
import { VERSION } from './version.js';
import { openDurability, WalLocked } from './wal/setup.js';

const USAGE = `usage: node dist/main.js [--help | --version]   (npm start)
Starts the event ingest server. Every setting comes from environment variables: see
docs/config.md, or the Configuration table in README.md. With no S3_BUCKET it runs in local mode.
  --help     this text
  --version  the version`;

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    fail(createLogger(1), `invalid configuration: ${err.message}`);
  }
  const log = createLogger(1, { level: config.logLevel, base: { instance: config.instanceId } });

  if (config.s3.bucket === undefined) {
    log.warn(`LOCAL MODE: S3_BUCKET is not set, so batches go to an embedded S3-compatible server with data under ./${LOCAL_DATA_DIR}. Not for production: set S3_BUCKET.`);
  }
  // After the LOCAL MODE warning, which stays the first line a developer sees.
  log.info({ version: VERSION, node: process.version }, `event-ingest ${VERSION} starting`);
  if (uwsLoadError !== undefined) fail(log, `HTTP engine: ${uwsLoadError}`);
  let target: S3Target;
  try {
    target = await connectS3(config);
  } catch (err) {
    if (err instanceof LocalModeUnavailable || err instanceof NoRegion) fail(log, err.message);
    throw err;
  }
  const { client, bucket, local: localS3 } = target;

  const engineMessage = httpEngine === 'native' ? 'native uWebSockets.js' : 'JS fallback of uWebSockets.js: much slower, the native addon did not load';
  log[httpEngine === 'native' ? 'info' : 'warn']({ engine: httpEngine }, `HTTP engine: ${engineMessage}`);

  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  observeBuild(registry, VERSION);
  let preflightOk = false;
  observePreflight(registry, () => preflightOk);
  // WORKERS > 1: the workers' HTTP counters, in shared memory, summed at each scrape.
  const workerCounts = IngestWorkers.sharedCounts(config.workers > 1 ? config.workers : 0);
  const httpCounts = createHttpMetrics(registry, httpEngine, workerCounts.counts);
  const uploadMetrics = createUploadMetrics(registry);
  const dlqMetrics = createDlqMetrics(registry);

  const uploader = new S3Uploader(
    client,
    { bucket, object: config.s3.object, maxAttempts: config.uploadMaxAttempts, timeoutMs: config.uploadTimeoutMs },
    uploadMetrics,
    log.child({ part: 's3' }),
  );
  observeS3Failing(registry, () => uploader.failingSeconds());
  const durability = await openDurability(config, registry, log.child({ part: 'wal' })).catch((err: unknown) => {
    if (err instanceof WalLocked) fail(log, err.message);
    throw err;
  });
  const dlq = await DlqStore.open(
    {
      dir: config.dlqDir,
      maxBytes: config.dlqMaxBytes,
      maxFiles: config.dlqMaxFiles,
      ttlSeconds: config.dlqTtlSeconds,
      now: Date.now,
      repair: true,
      prefix: config.s3.prefix,
      instanceId: config.instanceId,
    },
    dlqMetrics,
    log.child({ part: 'dlq' }),
  ).catch((err: unknown) => {
    // Its fatal line, naming the holder, is already written.
    if (err instanceof DlqLocked) fail(log, err.message, true);
    throw err;
  });
  observeDlq(registry, dlq, Date.now);
  const pipelineOptions: PipelineOptions = {
    channelMaxEvents: config.channelMaxEvents,
    channelMaxBytes: config.channelMaxBytes,
    batch: {
      maxEvents: config.batchMaxEvents,
      maxBytes: config.batchMaxBytes,
      maxAgeMs: config.batchMaxAgeMs,
      prefix: config.s3.prefix,
      instanceId: config.instanceId,
    },
    upload: { concurrency: config.uploadConcurrency, maxQueuedBatches: config.uploadQueueMaxBatches, gzipLevel: config.gzipLevel },
  };
  const spill: Spill = (batch, body) => dlq.save(batch, body);
  const pipeline = new Pipeline(
    pipelineOptions,
    uploader,
    spill,
    uploadMetrics,
    log.child({ part: 'upload' }),
    durability.journal,
  );
  durability.start(pipeline);
  const reuploader = new Reuploader(dlq, uploader, pipeline, config.dlqReuploadIdleMs, dlqMetrics, log.child({ part: 'dlq' }), Date.now);
  observeQueueDepths(registry, {
    channelEvents: () => pipeline.events,
    channelBytes: () => pipeline.bytes,
    uploadQueued: () => pipeline.uploadQueued,
    uploadInFlight: () => pipeline.uploadInFlight,
  });

  const intake = durability.journal ?? pipeline;
  const renderMetrics = async () => ({ contentType: registry.contentType, body: await registry.metrics() });
  const server = new IngestServer(config, intake, httpCounts, renderMetrics, log.child({ part: 'http' }), config.metricsPort !== undefined ? 'own port' : 'ingest port');
  // Until a worker crashes after the signal handlers are set, a crash is a failed start.
  let crash = (): void => fail(log, 'a worker thread crashed during start-up');
  const workers =
    config.workers === 1
      ? undefined
      : await IngestWorkers.start(
          {
            config,
            server,
            intake,
            renderMetrics,
            log: log.child({ part: 'http' }),
            crashed: () => crash(),
          },
          workerCounts.memory,
        ).catch((err: Error) => fail(log, err.message));
  log.info({ workers: config.workers }, config.workers === 1 ? 'HTTP front: 1 thread (WORKERS=1)' : `HTTP front: ${config.workers} worker threads (WORKERS)`);
  let ports: { port: number; metricsPort: number };
  try {
    ports = await server.listen(config.host, config.port, config.metricsPort);
  } catch (err) {
    fail(log, (err as Error).message);
  }
  reuploader.start();
  // In the background: its answer is only reported, so a slow S3 does not hold up readiness.
  const preflight = new AbortController();
  const preflightOptions = { bucket, prefix: config.s3.prefix, object: config.s3.object, timeoutMs: config.uploadTimeoutMs, instanceId: config.instanceId, version: VERSION };
  preflightS3(client, preflightOptions, log.child({ part: 's3' }), preflight.signal).then(
    (ok) => (preflightOk = ok),
    (err: Error) => log.error({ err: err.message }, `S3 preflight could not run: ${err.message}`),
  );
  durability.adopt({ pipeline: pipelineOptions, uploader, spill, uploadMetrics, dlqMetrics });
  // A reader of stdout that went away (EPIPE) must not crash the server: the EMF lines are lost,
  // the service is not. (pino's synchronous writes handle EPIPE themselves.)
  process.stdout.on('error', () => {});
  const stopEmf = config.emfIntervalMs === undefined ? undefined : startEmf(registry, config.emfIntervalMs, config.instanceId, (line) => process.stdout.write(line));
  server.markReady();
  // The message stays `listening`, which scripts and the benchmark wait for; the address is in the fields.
  log.info({ address: `${config.host}:${ports.port}`, host: config.host, port: ports.port, metricsPort: ports.metricsPort, bucket, prefix: config.s3.prefix, version: VERSION }, 'listening');
  if (localS3 !== undefined) {
    log.info(`try: curl -X POST http://127.0.0.1:${ports.port}/v1/events -H 'content-type: application/json' -d '{"type":"hello"}'`);
  }

  crash = shutDownOnSignals({
    log,
    timeoutMs: config.shutdownTimeoutMs,
    stopAccepting: () => {
      server.beginShutdown();
      workers?.beginShutdown();
      reuploader.abort();
      preflight.abort();
    },
    pipeline,
    dlqDropped: () => dlq.droppedEventsByReason,
    steps: [
      ['closing the WAL and the lease', () => durability.close()],
      ['stopping DLQ re-upload', () => reuploader.stop()],
      ['stopping EMF', () => stopEmf?.()],
      [
        'closing the listener',
        () => {
          server.close();
          return workers?.close();
        },
      ],
      ['stopping the local S3 server', () => localS3?.close()],
      ['releasing the DLQ directory', () => dlq.close()],
    ],
    ...(workers === undefined ? {} : { endThreads: (ms: number) => workers.close(ms) }),
  });
}

function fail(log: Logger, message: string, logged = false): never {
  if (!logged) log.fatal(message);
  process.stderr.write(`${message}\n`);
  process.exit(1);
}

/** --help and --version answer without starting anything; any other argument is a mistake. */
function answerArguments(args: string[]): void {
  const [arg] = args;
  if (arg === undefined) return;
  if (arg === '--version') process.stdout.write(`event-ingest ${VERSION}\n`);
  else if (arg === '--help' || arg === '-h') process.stdout.write(`${USAGE}\n`);
  else {
    process.stderr.write(`unknown argument "${arg}"\n${USAGE}\n`);
    process.exit(2);
  }
  process.exit(0);
}

answerArguments(process.argv.slice(2));
await main();
