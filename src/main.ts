// Reads config, builds each part with its slice of config, logger and metrics, listens, and closes in order.
import { collectDefaultMetrics, Registry } from 'prom-client';
import { destination, pino, stdTimeFunctions, type Logger, type LoggerOptions } from 'pino';
import { type Config, ConfigError, loadConfig } from './config.js';
import { httpEngine, IngestServer } from './ingest/server.js';
import { uwsLoadError } from './ingest/uws.js';
import { Reuploader } from './dlq/reupload.js';
import { DlqLocked, DlqStore } from './dlq/store.js';
import { LocalModeUnavailable } from './local-s3.js';
import { createDlqMetrics, observeDlq } from './metrics/dlq.js';
import { startEmf } from './metrics/emf.js';
import { createHttpMetrics } from './metrics/http.js';
import { createUploadMetrics, observeQueueDepths } from './metrics/upload.js';
import { Pipeline, type PipelineOptions } from './pipeline.js';
import { shutDownOnSignals } from './shutdown.js';
import { connectS3, LOCAL_DATA_DIR, NoRegion, type S3Target } from './upload/connect.js';
import type { Spill } from './upload/loop.js';
import { S3Uploader } from './upload/s3.js';
import { openDurability, WalLocked } from './wal/setup.js';

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    fail(logger(), `invalid configuration: ${err.message}`);
  }
  const log = logger({ level: config.logLevel, base: { instance: config.instanceId } });

  if (config.s3.bucket === undefined) {
    log.warn(`LOCAL MODE: S3_BUCKET is not set, so batches go to an embedded S3-compatible server with data under ./${LOCAL_DATA_DIR}. Not for production: set S3_BUCKET.`);
  }
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
  const httpCounts = createHttpMetrics(registry, httpEngine);
  const uploadMetrics = createUploadMetrics(registry);
  const dlqMetrics = createDlqMetrics(registry);

  const uploader = new S3Uploader(
    client,
    { bucket, maxAttempts: config.uploadMaxAttempts, timeoutMs: config.uploadTimeoutMs },
    uploadMetrics,
    log.child({ part: 's3' }),
  );
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

  const server = new IngestServer(
    config,
    durability.journal ?? pipeline,
    httpCounts,
    async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
    log.child({ part: 'http' }),
    config.metricsPort !== undefined,
  );
  let ports: { port: number; metricsPort: number };
  try {
    ports = await server.listen(config.host, config.port, config.metricsPort);
  } catch (err) {
    fail(log, (err as Error).message);
  }
  reuploader.start();
  durability.adopt({ pipeline: pipelineOptions, uploader, spill, uploadMetrics, dlqMetrics });
  // A reader of stdout that went away (EPIPE) must not crash the server: the EMF lines are lost,
  // the service is not. (pino's synchronous writes handle EPIPE themselves.)
  process.stdout.on('error', () => {});
  const stopEmf = config.emfIntervalMs === undefined ? undefined : startEmf(registry, config.emfIntervalMs, config.instanceId, (line) => process.stdout.write(line));
  server.markReady();
  log.info({ port: ports.port, metricsPort: ports.metricsPort, bucket, prefix: config.s3.prefix }, 'listening');
  if (localS3 !== undefined) {
    log.info(`try: curl -X POST http://127.0.0.1:${ports.port}/v1/events -H 'content-type: application/json' -d '{"type":"hello"}'`);
  }

  shutDownOnSignals({
    log,
    timeoutMs: config.shutdownTimeoutMs,
    stopAccepting: () => {
      server.beginShutdown();
      reuploader.abort();
    },
    pipeline,
    dlqDropped: () => dlq.droppedEventsByReason,
    steps: [
      ['closing the WAL and the lease', () => durability.close()],
      ['stopping DLQ re-upload', () => reuploader.stop()],
      ['stopping EMF', () => stopEmf?.()],
      ['closing the listener', () => server.close()],
      ['stopping the local S3 server', () => localS3?.close()],
      ['releasing the DLQ directory', () => dlq.close()],
    ],
  });
}

function fail(log: Logger, message: string, logged = false): never {
  if (!logged) log.fatal(message);
  process.stderr.write(`${message}\n`);
  process.exit(1);
}

// Synchronous writes: log lines are few (none per request), and a line written is never lost or
// reordered at exit, whatever ends the process.
function logger(options: LoggerOptions = {}): Logger {
  return pino({ timestamp: stdTimeFunctions.isoTime, ...options }, destination({ dest: 1, sync: true }));
}

await main();
