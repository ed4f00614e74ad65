// Reads config, builds each part with its slice of config, logger and metrics, listens, and closes in order.
import { collectDefaultMetrics, Registry } from 'prom-client';
import { pino, stdTimeFunctions, type Logger } from 'pino';
import { Channel } from './channel.js';
import { type Config, ConfigError, loadConfig } from './config.js';
import { httpEngine, IngestServer } from './ingest/server.js';
import { LOCAL_BUCKET, LOCAL_CREDENTIALS, type LocalS3, LocalModeUnavailable, startLocalS3 } from './local-s3.js';
import { createDlqMetrics } from './metrics/dlq.js';
import { createHttpMetrics } from './metrics/http.js';
import { createUploadMetrics, observeQueueDepths } from './metrics/upload.js';
import { Batcher } from './upload/batcher.js';
import { type Spill, UploadLoop } from './upload/loop.js';
import { createS3Client, S3Uploader } from './upload/s3.js';

const LOCAL_DATA_DIR = 'data/s3';

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    fail(pino(), `invalid configuration: ${err.message}`);
  }
  const log = pino({ level: config.logLevel, base: { instance: config.instanceId }, timestamp: stdTimeFunctions.isoTime });

  let localS3: LocalS3 | undefined;
  if (config.s3.bucket === undefined) {
    log.warn(`LOCAL MODE: S3_BUCKET is not set, so batches go to an embedded S3-compatible server with data under ./${LOCAL_DATA_DIR}. Not for production: set S3_BUCKET.`);
    try {
      localS3 = await startLocalS3(LOCAL_DATA_DIR);
    } catch (err) {
      if (err instanceof LocalModeUnavailable) fail(log, err.message);
      throw err;
    }
  }
  const bucket = config.s3.bucket ?? LOCAL_BUCKET;
  const client = createS3Client(
    localS3 === undefined
      ? config.s3
      : { endpoint: localS3.endpoint, forcePathStyle: true, region: 'us-east-1', credentials: LOCAL_CREDENTIALS },
  );
  try {
    await client.config.region();
  } catch {
    fail(log, 'no AWS region: set AWS_REGION (ECS sets it for tasks)');
  }

  const engineMessage = httpEngine === 'native' ? 'native uWebSockets.js' : 'JS fallback of uWebSockets.js: much slower, the native addon did not load';
  log[httpEngine === 'native' ? 'info' : 'warn']({ engine: httpEngine }, `HTTP engine: ${engineMessage}`);

  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const httpMetrics = createHttpMetrics(registry, httpEngine);
  const uploadMetrics = createUploadMetrics(registry);
  const dlqMetrics = createDlqMetrics(registry);

  const uploader = new S3Uploader(
    client,
    { bucket, maxAttempts: config.uploadMaxAttempts, timeoutMs: config.uploadTimeoutMs },
    uploadMetrics,
    log.child({ part: 's3' }),
  );
  // The DLQ plugs in here; until then a batch that could not be uploaded is lost, and said so.
  const spill: Spill = async (batch) => {
    dlqMetrics.eventsDropped.inc(batch.events);
    log.error({ key: batch.key, events: batch.events }, 'batch dropped: upload failed and no DLQ is configured');
  };
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
  channel.onPush = () => batcher.drain();
  loop.onSlotFree = () => batcher.drain();
  observeQueueDepths(registry, {
    channelEvents: () => channel.events,
    channelBytes: () => channel.bytes,
    uploadQueued: () => loop.queued,
    uploadInFlight: () => loop.inFlight,
  });

  const server = new IngestServer(
    config,
    channel,
    httpMetrics,
    async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
    log.child({ part: 'http' }),
    config.metricsPort !== undefined,
  );
  const ports = await server.listen(config.host, config.port, config.metricsPort);
  server.markReady();
  log.info({ port: ports.port, metricsPort: ports.metricsPort, bucket, prefix: config.s3.prefix }, 'listening');
  if (localS3 !== undefined) {
    log.info(`try: curl -X POST http://127.0.0.1:${ports.port}/v1/events -H 'content-type: application/json' -d '{"type":"hello"}'`);
  }

  let closing: Promise<void> | undefined;
  const shutdown = (signal: NodeJS.Signals): void => {
    closing ??= (async () => {
      log.info({ signal }, 'shutdown: no longer accepting events, flushing batches');
      server.beginShutdown();
      channel.close();
      const drained = await within(config.shutdownTimeoutMs, async () => {
        // Cut whatever is open, hand batches to the loop as slots free, until nothing is left.
        for (batcher.flush(); channel.events > 0 || batcher.heldEvents > 0; batcher.flush()) await loop.onRoom();
        await loop.onIdle();
      });
      server.close();
      await localS3?.close();
      const count = async (metric: { get(): Promise<{ values: { value: number }[] }> }) => (await metric.get()).values[0]?.value ?? 0;
      const accepted = await count(httpMetrics.eventsAccepted);
      const stored = await count(uploadMetrics.eventsStored);
      const dropped = await count(dlqMetrics.eventsDropped);
      const notUploaded = accepted - stored - dropped;
      log[notUploaded === 0 ? 'info' : 'error'](
        { drained, acceptedEvents: accepted, storedEvents: stored, droppedEvents: dropped, notUploadedEvents: notUploaded },
        'shutdown complete',
      );
      process.exit(0);
    })();
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

/** Runs `work` for at most `ms`; true if it finished. */
async function within(ms: number, work: () => Promise<void>): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(resolve, ms, false)));
  try {
    return await Promise.race([work().then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function fail(log: Logger, message: string): never {
  log.fatal(message);
  process.stderr.write(`${message}\n`);
  process.exit(1);
}

await main();
