// Reads config, builds each part with its slice of config, logger and metrics, listens, and closes in order.
import { collectDefaultMetrics, type Counter, Registry } from 'prom-client';
import { pino, stdTimeFunctions, type Logger } from 'pino';
import { Channel } from './channel.js';
import { type Config, ConfigError, loadConfig } from './config.js';
import { httpEngine, IngestServer } from './ingest/server.js';
import { uwsLoadError } from './ingest/uws.js';
import { Reuploader } from './dlq/reupload.js';
import { DlqStore } from './dlq/store.js';
import { LocalModeUnavailable } from './local-s3.js';
import { createDlqMetrics, observeDlq } from './metrics/dlq.js';
import { startEmf } from './metrics/emf.js';
import { createHttpMetrics } from './metrics/http.js';
import { createUploadMetrics, observeQueueDepths } from './metrics/upload.js';
import { Batcher } from './upload/batcher.js';
import { type Spill, UploadLoop } from './upload/loop.js';
import { connectS3, LOCAL_DATA_DIR, NoRegion, type S3Target } from './upload/connect.js';
import { S3Uploader } from './upload/s3.js';

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    fail(pino(), `invalid configuration: ${err.message}`);
  }
  const log = pino({ level: config.logLevel, base: { instance: config.instanceId }, timestamp: stdTimeFunctions.isoTime });

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
  const dlq = await DlqStore.open(
    {
      dir: config.dlqDir,
      maxBytes: config.dlqMaxBytes,
      maxFiles: config.dlqMaxFiles,
      ttlSeconds: config.dlqTtlSeconds,
      now: Date.now,
      repair: true,
    },
    dlqMetrics,
    log.child({ part: 'dlq' }),
  );
  observeDlq(registry, dlq, Date.now);
  const spill: Spill = (batch, body) => dlq.save(batch, body);
  const channel = new Channel(config.channelMaxEvents, config.channelMaxBytes);
  const loop = new UploadLoop(
    uploader,
    spill,
    { concurrency: config.uploadConcurrency, maxQueuedBatches: config.uploadQueueMaxBatches, gzipLevel: config.gzipLevel },
    uploadMetrics,
    log.child({ part: 'upload' }),
  );
  const batcher = new Batcher(channel, loop, {
    maxEvents: config.batchMaxEvents,
    maxBytes: config.batchMaxBytes,
    maxAgeMs: config.batchMaxAgeMs,
    prefix: config.s3.prefix,
    instanceId: config.instanceId,
  });
  const reuploader = new Reuploader(dlq, uploader, loop, config.dlqReuploadIdleMs, dlqMetrics, log.child({ part: 'dlq' }), Date.now);
  channel.onPush = () => batcher.drain();
  loop.onSlotFree = () => batcher.drain();
  loop.onStored = () => reuploader.s3Recovered();
  observeQueueDepths(registry, {
    channelEvents: () => channel.events,
    channelBytes: () => channel.bytes,
    uploadQueued: () => loop.queued,
    uploadInFlight: () => loop.inFlight,
  });

  const server = new IngestServer(
    config,
    channel,
    httpCounts,
    async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
    log.child({ part: 'http' }),
    config.metricsPort !== undefined,
  );
  const ports = await server.listen(config.host, config.port, config.metricsPort);
  reuploader.start();
  const stopEmf = config.emfIntervalMs === undefined ? undefined : startEmf(registry, config.emfIntervalMs, config.instanceId, (line) => process.stdout.write(line));
  server.markReady();
  log.info({ port: ports.port, metricsPort: ports.metricsPort, bucket, prefix: config.s3.prefix }, 'listening');
  if (localS3 !== undefined) {
    log.info(`try: curl -X POST http://127.0.0.1:${ports.port}/v1/events -H 'content-type: application/json' -d '{"type":"hello"}'`);
  }

  // Shutdown (SPEC §5, docs/shutdown.md), in order: stop accepting; upload what is held until the
  // deadline; at the deadline abort uploads in flight and spill everything left to the DLQ; close.
  let closing: Promise<void> | undefined;
  let hurry: () => void = () => {};
  const shutdown = async (signal: NodeJS.Signals): Promise<void> => {
    log.info({ signal, timeoutMs: config.shutdownTimeoutMs }, 'shutdown: no longer accepting events, uploading what is held');
    server.beginShutdown();
    channel.close();
    const reuploadStopped = reuploader.stop();
    const deadline = new Promise<void>((resolve) => {
      hurry = resolve;
      setTimeout(resolve, config.shutdownTimeoutMs).unref();
    });
    const uploadAll = async (): Promise<void> => {
      for (batcher.flush(); channel.events > 0 || batcher.heldEvents > 0; batcher.flush()) await loop.onRoom();
      await loop.onIdle();
    };
    const uploaded = await Promise.race([uploadAll().then(() => true), deadline.then(() => false)]);
    if (!uploaded) {
      log.warn('shutdown deadline: aborting uploads in flight and spilling everything not uploaded to the DLQ');
      loop.abort();
      batcher.flush();
      await loop.onIdle();
    }
    await reuploadStopped;
    await stopEmf?.();
    server.close();
    await localS3?.close();
    const value = async (metric: Counter<string>, reason?: string) => (await metric.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
    const accepted = httpCounts.eventsAccepted;
    const stored = await value(uploadMetrics.eventsStored);
    const spilled = await value(dlqMetrics.eventsSpilled);
    const dropped = await value(dlqMetrics.eventsDropped, 'write_failed');
    // Every accepted event is in S3, on disk, or counted as lost; anything else would be a bug.
    const unaccounted = accepted - stored - spilled - dropped;
    log[unaccounted === 0 && dropped === 0 ? 'info' : 'error'](
      { uploadedInTime: uploaded, acceptedEvents: accepted, storedEvents: stored, spilledEvents: spilled, droppedEvents: dropped, unaccountedEvents: unaccounted },
      'shutdown complete',
    );
    process.exit(0);
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    if (closing === undefined) {
      closing = shutdown(signal);
      return;
    }
    // Nothing is dropped for a second signal: it only brings the deadline forward.
    log.warn({ signal }, 'shutdown: second signal, spilling to the DLQ now');
    hurry();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

function fail(log: Logger, message: string): never {
  log.fatal(message);
  process.stderr.write(`${message}\n`);
  process.exit(1);
}

await main();
