// Builds each part with its slice of config, logger and metrics, listens, and gives the ordered
// shutdown that closes them: the whole server, without the process (main.ts adds the signals,
// the exit codes and the messages on stderr; tests run it in their own process).
import path from 'node:path';
import type { Logger } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { Config } from './config.js';
import { SymlinkRefused } from './disk/errors.js';
import { Reuploader } from './dlq/reupload.js';
import { DlqLocked, DlqStore } from './dlq/store.js';
import { IdempotencyTable, IdempotentIntake } from './idempotency.js';
import { IngestServer, type Unready } from './ingest/server.js';
import { uwsLoadError } from './ingest/uws.js';
import { IngestWorkers } from './ingest/workers.js';
import { LocalModeUnavailable } from './local-s3.js';
import { observeBuild } from './metrics/build.js';
import { observeIdempotency } from './metrics/idempotency.js';
import { createDlqMetrics, type DlqMetrics, observeDlq } from './metrics/dlq.js';
import { startEmf } from './metrics/emf.js';
import { createHttpMetrics, type HttpCounts } from './metrics/http.js';
import { renderAtMostEvery } from './metrics/page.js';
import { observePreflight } from './metrics/preflight.js';
import { createUploadMetrics, observeQueueDepths, observeS3Failing, type UploadMetrics } from './metrics/upload.js';
import { createWalMetrics, observeWal, type WalMetrics } from './metrics/wal.js';
import type { PipelineOptions } from './pipeline.js';
import { Shutdown } from './shutdown.js';
import { connectS3, LOCAL_DATA_DIR, NoRegion, type S3Target, uploaderFor } from './upload/connect.js';
import { PREFLIGHT_RETRY_MS, type PreflightFailure, watchS3 } from './upload/preflight.js';
import type { S3Uploader } from './upload/s3.js';
import { VERSION } from './version.js';
import { Adopter } from './wal/adopt.js';
import { Lease } from './wal/lease.js';
import { WalLocked } from './wal/replay.js';
import { type PipelineDeps, type RunningPipeline, startPipeline } from './wiring.js';

/** Why the server could not start, said to the operator as is. `logged`: its fatal line is already written. */
export class StartError extends Error {
  override name = 'StartError';
  constructor(
    message: string,
    readonly logged = false,
  ) {
    super(message);
  }
}

export interface Server {
  readonly port: number;
  readonly metricsPort: number;
  readonly shutdown: Shutdown;
  /** WORKERS > 1: ends the worker threads, true once all have within `ms`. */
  readonly endThreads: ((ms: number) => Promise<boolean>) | undefined;
}

/** Every metric of the server, in one registry. */
interface Metrics {
  readonly registry: Registry;
  readonly http: HttpCounts;
  /** WORKERS > 1: each worker's HTTP counters, in shared memory. */
  readonly workerCounts: SharedArrayBuffer[];
  readonly upload: UploadMetrics;
  readonly dlq: DlqMetrics;
  /** ACK_LEVEL=disk or a shared root. */
  readonly wal: WalMetrics | undefined;
}

/** The parts built before the HTTP front, in the order they are closed after the pipeline. */
interface Storage {
  readonly target: S3Target;
  readonly uploader: S3Uploader;
  readonly lease: Lease | undefined;
  readonly dlq: DlqStore;
  readonly running: RunningPipeline;
  readonly reuploader: Reuploader;
  readonly adopter: Adopter | undefined;
}

/**
 * Starts the server; throws StartError for what an operator must fix. `crashed`: a worker thread
 * crashed (then the shutdown is begun by whoever owns the process).
 */
export async function startServer(config: Config, log: Logger, crashed: () => void): Promise<Server> {
  if (config.s3.bucket === undefined) {
    log.warn(`LOCAL MODE: S3_BUCKET is not set, so batches go to an embedded S3-compatible server with data under ./${LOCAL_DATA_DIR}. Not for production: set S3_BUCKET.`);
  }
  // After the LOCAL MODE warning, which stays the first line a developer sees.
  log.info({ version: VERSION, node: process.version }, 'event-ingest starting');
  const storageClass = config.s3.object.storageClass;
  // Athena, and S3 GETs generally, refuse objects in these classes until each is restored.
  if (storageClass === 'GLACIER' || storageClass === 'DEEP_ARCHIVE') log.warn({ storageClass }, 'S3_STORAGE_CLASS is one that Athena and other readers cannot read without a restore: stored objects will not be queryable');
  if (uwsLoadError !== undefined) throw new StartError(`HTTP engine: ${uwsLoadError}`);
  log.info({ engine: 'native' }, 'HTTP engine: native uWebSockets.js');
  const metrics = createMetrics(config);
  const storage = await openStorage(config, metrics, log);
  const intake = idempotentIntake(config, storage.running, metrics.registry);
  const renderMetrics = renderAtMostEvery(async () => ({ contentType: metrics.registry.contentType, body: await metrics.registry.metrics() }), config.metricsRenderIntervalMs, () => performance.now());
  // ACK_LEVEL=disk or s3: answered later (src/ingest/post-events.ts: pipelining, half-close).
  const server = new IngestServer({ ...config, answersLater: config.ackLevel !== 'memory' }, intake, metrics.http, renderMetrics, log.child({ part: 'http' }), config.metricsPort !== undefined ? 'own port' : 'ingest port');
  const workers =
    config.workers === 1
      ? undefined
      : await IngestWorkers.start({ config, server, intake, renderMetrics, log: log.child({ part: 'http' }), crashed }, metrics.workerCounts).catch(cannotServe);
  log.info({ workers: config.workers }, 'HTTP front: threads (WORKERS)');
  const ports = await server.listen(config.host, config.port, config.metricsPort).catch(cannotServe);
  storage.reuploader.start();
  const preflight = startPreflight(config, storage.target, metrics.registry, (reason) => (server.unready(reason), workers?.unready(reason)), log);
  // A reader of stdout that went away (EPIPE) must not crash the server: the EMF lines are lost,
  // the service is not. (pino's synchronous writes handle EPIPE themselves.)
  process.stdout.on('error', () => {});
  const stopEmf = config.emfIntervalMs === undefined ? undefined : startEmf(metrics.registry, config.emfIntervalMs, config.instanceId, (line) => process.stdout.write(line));
  server.markReady();
  // The message stays `listening`, which scripts and the benchmark wait for; the address is in the fields.
  const metricsAt = metricsUrl(config.host, ports.metricsPort);
  log.info({ address: `${config.host}:${ports.port}`, host: config.host, port: ports.port, metricsPort: ports.metricsPort, metrics: metricsAt, bucket: storage.target.bucket, prefix: config.s3.prefix, version: VERSION }, 'listening');
  if (storage.target.local !== undefined) log.info({ try: `curl -X POST http://127.0.0.1:${ports.port}/v1/events -H 'content-type: application/json' -d '{"type":"hello"}'`, metrics: metricsAt }, 'LOCAL MODE: send a first event with the command in `try`');
  const { reuploader, running, adopter, lease, dlq, target } = storage;
  const { pipeline } = running;
  const shutdown = new Shutdown({
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
      ['closing the WAL and the lease', async () => (await adopter?.stop(), await running.closeWal(), await lease?.release())],
      ['stopping DLQ re-upload', () => reuploader.stop()],
      ['stopping EMF', () => stopEmf?.()],
      ['closing the listener', () => (server.close(), workers?.close())],
      ['stopping the local S3 server', () => target.local?.close()],
      ['releasing the DLQ directory', () => dlq.close()],
    ],
  });
  return { ...ports, shutdown, endThreads: workers && ((ms) => workers.close(ms)) };
}

/**
 * The pipeline behind the Idempotency-Key table (one for the process, whatever WORKERS), with the
 * keys of the requests the WAL holds at start (ACK_LEVEL=disk) put back.
 */
function idempotentIntake(config: Config, running: RunningPipeline, registry: Registry): IdempotentIntake {
  const table = new IdempotencyTable(config.idempotency.windowMs, config.idempotency.maxKeys);
  for (const { at, ...idem } of running.keys) table.restore(idem, at);
  observeIdempotency(registry, table);
  return new IdempotentIntake(running.pipeline, table);
}

/** S3, the lease, the DLQ and the pipeline with its WAL replayed: what the front hands events to. */
async function openStorage(config: Config, metrics: Metrics, log: Logger): Promise<Storage> {
  const target = await connectS3(config).catch(startFailed);
  const uploader = uploaderFor(target, config, metrics.upload, log.child({ part: 's3' }));
  observeS3Failing(metrics.registry, () => uploader.failingSeconds());
  // With a shared root the lease must be fresh before this instance's directories are used.
  const { sharedRoot, leaseStaleMs } = config.wal;
  const lease = sharedRoot === undefined ? undefined : await Lease.take(path.join(sharedRoot, config.instanceId), config.instanceId, leaseStaleMs, log.child({ part: 'wal' }));
  const fresh = lease === undefined ? () => true : () => lease.fresh();
  const dlq = await openDlq(config, metrics, log);
  const options = pipelineOptionsOf(config);
  const deps: PipelineDeps = { uploader, spill: dlq, metrics: metrics.upload, log: log.child({ part: 'upload' }) };
  const wal = metrics.wal && { ...config.wal, holder: config.instanceId, metrics: metrics.wal, keys: config.idempotency };
  const running = await startPipeline({ options, ackLevel: config.ackLevel, ackTimeoutMs: config.ackTimeoutMs, ...(wal && { wal }), fresh }, { ...deps, log: log.child({ part: 'wal' }) }).catch(startFailed);
  observePipeline(config, metrics, running);
  const reuploader = new Reuploader(dlq, uploader, running.pipeline, config.dlqReuploadIdleMs, metrics.dlq, log.child({ part: 'dlq' }), Date.now);
  const adopter = startAdopter(config, { uploader, deps, options, metrics, fresh }, log);
  return { target, uploader, lease, dlq, running, reuploader, adopter };
}

/** The errors an operator must fix become a StartError with their message; any other is a bug, thrown on. */
function startFailed(err: unknown): never {
  // DlqLocked: its fatal line, naming the holder, is already written. SymlinkRefused: a directory
  // the server would write into (WAL_DIR/corrupt, an instance directory) is a symlink.
  const known = [LocalModeUnavailable, NoRegion, WalLocked, DlqLocked, SymlinkRefused];
  if (known.some((kind) => err instanceof kind)) throw new StartError((err as Error).message, err instanceof DlqLocked);
  throw err;
}

/** Worker threads that did not start, a port in use: said as they are. */
function cannotServe(err: Error): never {
  throw new StartError(err.message);
}

function createMetrics(config: Config): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  observeBuild(registry, VERSION);
  const workers = IngestWorkers.sharedCounts(config.workers > 1 ? config.workers : 0);
  return {
    registry,
    http: createHttpMetrics(registry, workers.counts),
    workerCounts: workers.memory,
    upload: createUploadMetrics(registry),
    dlq: createDlqMetrics(registry),
    wal: config.ackLevel === 'disk' || config.wal.sharedRoot !== undefined ? createWalMetrics(registry) : undefined,
  };
}

async function openDlq(config: Config, metrics: Metrics, log: Logger): Promise<DlqStore> {
  const { dlqDir: dir, dlqMaxBytes: maxBytes, dlqMaxFiles: maxFiles, dlqWhenFull: whenFull, dlqTtlSeconds: ttlSeconds, instanceId } = config;
  const options = { dir, maxBytes, maxFiles, whenFull, ttlSeconds, now: Date.now, repair: true, prefix: config.s3.prefix, instanceId };
  const dlq = await DlqStore.open(options, metrics.dlq, log.child({ part: 'dlq' })).catch(startFailed);
  observeDlq(metrics.registry, dlq, Date.now);
  return dlq;
}

function pipelineOptionsOf(config: Config): PipelineOptions {
  return {
    channelMaxEvents: config.channelMaxEvents,
    channelMaxBytes: config.channelMaxBytes,
    batch: { maxEvents: config.batchMaxEvents, maxBytes: config.batchMaxBytes, maxAgeMs: config.batchMaxAgeMs, prefix: config.s3.prefix, instanceId: config.instanceId, codec: config.compression, ...(config.objectKey !== undefined && { key: { template: config.objectKey, maxOpen: config.partitionsMaxOpen } }) },
    upload: { concurrency: config.uploadConcurrency, maxQueuedBatches: config.uploadQueueMaxBatches, gzipLevel: config.gzipLevel, zstdLevel: config.zstdLevel },
  };
}

function observePipeline(config: Config, metrics: Metrics, { pipeline, wal }: RunningPipeline): void {
  observeQueueDepths(metrics.registry, {
    channelEvents: () => pipeline.events,
    channelBytes: () => pipeline.bytes,
    uploadQueued: () => pipeline.uploadQueued,
    uploadInFlight: () => pipeline.uploadInFlight,
  });
  if (wal !== undefined) observeWal(metrics.registry, wal, config.wal.maxBytes);
}

/** Where to read /metrics, for whoever reads the `listening` line (in local mode, a developer). */
function metricsUrl(host: string, port: number): string {
  const reachable = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  return `http://${reachable}:${port}/metrics`;
}

/**
 * In the background, so a slow S3 does not hold up readiness: a refusal of configuration makes
 * the server not ready (`unready`) until a retry succeeds; a transient failure leaves it ready.
 */
function startPreflight(config: Config, target: S3Target, registry: Registry, unready: (reason: Unready | undefined) => void, log: Logger): AbortController {
  let ok = false;
  observePreflight(registry, () => ok);
  const preflight = new AbortController();
  const options = { bucket: target.bucket, prefix: config.s3.prefix, object: config.s3.object, timeoutMs: config.uploadTimeoutMs, instanceId: config.instanceId, version: VERSION, retryMs: PREFLIGHT_RETRY_MS };
  const report = (failure: PreflightFailure | undefined): void => {
    ok = failure === undefined;
    // A transient failure after a refusal leaves the refusal standing: only a success clears it.
    if (failure === undefined) unready(undefined);
    else if (failure.configuration) unready({ error: 's3_misconfigured', message: `S3 refused the preflight PUT of ${failure.where} (${failure.code}): a configuration error (credentials, bucket, region, endpoint, permission, bucket or key policy); not ready until a retry, every ${PREFLIGHT_RETRY_MS / 1000} s, succeeds` });
  };
  watchS3(target.client, options, log.child({ part: 's3' }), preflight.signal, report).catch((err: Error) => log.error({ err }, 'S3 preflight could not run'));
  return preflight;
}

interface AdoptionDeps {
  readonly uploader: S3Uploader;
  readonly deps: PipelineDeps;
  readonly options: PipelineOptions;
  readonly metrics: Metrics;
  readonly fresh: () => boolean;
}

/**
 * With DURABLE_ROOT: adopts the directories of dead instances. Their WAL is replayed through a
 * pipeline built as this server's, under the dead instance's name, spilling to this server's DLQ.
 */
function startAdopter(config: Config, { uploader, deps, options, metrics, fresh }: AdoptionDeps, log: Logger): Adopter | undefined {
  const root = config.wal.sharedRoot;
  if (root === undefined) return undefined;
  const walMetrics = metrics.wal!;
  const adoptLog = log.child({ part: 'adopt' });
  const replay = async (walDir: string, deadId: string, stopped: Promise<void>): Promise<number> => {
    const replayLog = adoptLog.child({ adopted: deadId });
    const adopted = { ...options, batch: { ...options.batch, instanceId: deadId } };
    const wal = { ...config.wal, dir: walDir, holder: config.instanceId, metrics: walMetrics };
    const running = await startPipeline({ options: adopted, ackLevel: 'disk', ackTimeoutMs: config.ackTimeoutMs, wal, fresh: () => true }, { ...deps, log: replayLog });
    const { stored, spilled, dropped } = await running.pipeline.close(stopped);
    const unsettled = await running.closeWal();
    replayLog.info({ stored, spilled, dropped, unsettled }, 'adopted WAL replayed');
    return unsettled;
  };
  const adopter = new Adopter(
    { instanceId: config.instanceId, wal: { ...config.wal, sharedRoot: root }, replay, dlq: { ttlSeconds: config.dlqTtlSeconds, prefix: config.s3.prefix }, uploader, metrics: { wal: walMetrics, dlq: metrics.dlq }, fresh },
    adoptLog,
  );
  adopter.start();
  return adopter;
}
