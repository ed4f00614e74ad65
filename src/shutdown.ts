// Ordered shutdown on SIGTERM, SIGINT, SIGHUP or a crash (docs/shutdown.md): stop accepting, close
// the pipeline by its deadline, then stop the other parts; one summary line, always, then exit.
//
// Invariants:
// - every step is guarded (a failure is logged, the next step runs) and bounded in time;
// - a watchdog writes the summary and exits if the whole sequence still has not ended, so a bug
//   or a hung disk cannot keep the process until SIGKILL without a summary;
// - a second signal only brings the deadline forward; a crash at any point makes the exit code 1.
import type { Logger } from 'pino';
import { type Pipeline, SPILL_GRACE_MS, type Summary } from './pipeline.js';

/** Each step after the pipeline gets this long. */
const STEP_TIMEOUT_MS = 1000;
/** Beyond the sum of every bound, before the watchdog ends the process. */
const WATCHDOG_SLACK_MS = 2000;
/** At the exit, for worker threads (WORKERS > 1) to close their connections and end. */
const THREADS_END_MS = 500;

export interface ShutdownPlan {
  readonly log: Logger;
  readonly timeoutMs: number;
  /** Synchronous: from now on nothing new is accepted (503 shutting_down) and no DLQ file is taken. */
  stopAccepting(): void;
  readonly pipeline: Pipeline;
  /** Events the DLQ let go of in this process's life (evicted, expired, quarantined, not written), by reason. */
  dlqDropped(): Readonly<Record<string, number>>;
  /** What to stop once the pipeline has closed, in order, each named for the logs. */
  readonly steps: readonly (readonly [name: string, run: () => unknown])[];
}

/** How the shutdown ended: where every accepted event went, and the exit code it calls for. */
export interface Ended {
  readonly summary: Summary;
  readonly code: number;
}

/**
 * The ordered shutdown itself, without the process: begin() starts it once (a later call only
 * brings the deadline forward), `ended` resolves with the summary once it is logged. A server run
 * in a test process is closed by this; the process's signals and exit are shutDownOnSignals's.
 */
export class Shutdown {
  readonly ended: Promise<Ended>;
  #end: (ended: Ended) => void = () => {};
  #started = false;
  #finished = false;
  #exitCode = 0;
  #hurry: () => void = () => {};

  constructor(private readonly plan: ShutdownPlan) {
    this.ended = new Promise((resolve) => (this.#end = resolve));
  }

  begin(reason: string, code: number): void {
    this.#exitCode = Math.max(this.#exitCode, code);
    if (!this.#started) {
      this.#started = true;
      // #run() guards every step itself; this catch is for a bug in #run() alone.
      this.#run(reason).catch((err: unknown) => {
        this.plan.log.fatal({ err }, 'shutdown failed');
        this.#finish(this.plan.pipeline.summary(), 1);
      });
      return;
    }
    // Nothing is dropped for a second signal: it only brings the deadline forward.
    this.plan.log.warn({ signal: reason }, 'shutdown: second signal, spilling to the DLQ now');
    this.#hurry();
  }

  async #run(reason: string): Promise<void> {
    const { plan } = this;
    const { log } = plan;
    const watchdogMs = plan.timeoutMs + SPILL_GRACE_MS + plan.steps.length * STEP_TIMEOUT_MS + WATCHDOG_SLACK_MS;
    setTimeout(() => {
      log.error({ watchdogMs }, 'shutdown: did not end in time, exiting with what is known');
      this.#finish(plan.pipeline.summary(), 1);
    }, watchdogMs).unref();
    await step(log, 'stopping intake', () => plan.stopAccepting());
    // Only now: worker threads answer on their own, and must already refuse whoever read this line.
    log.info({ signal: reason, timeoutMs: plan.timeoutMs }, 'shutdown: no longer accepting events, uploading what is held');
    const deadline = new Promise<void>((resolve) => {
      this.#hurry = resolve;
      setTimeout(resolve, plan.timeoutMs).unref();
    });
    const summary = await plan.pipeline.close(deadline);
    for (const [name, work] of plan.steps) await step(log, name, work);
    this.#finish(summary, this.#exitCode);
  }

  #finish(summary: Summary, code: number): void {
    if (this.#finished) return;
    this.#finished = true;
    // Evictions during the shutdown spill happen after the last scrape could see them: say so here.
    const dlqDropped = this.plan.dlqDropped();
    const dlqDroppedTotal = Object.values(dlqDropped).reduce((a, b) => a + b, 0);
    this.plan.log[summary.unaccounted === 0 && summary.dropped === 0 && dlqDroppedTotal === 0 ? 'info' : 'error'](
      {
        uploadedInTime: summary.uploadedInTime,
        acceptedEvents: summary.accepted,
        storedEvents: summary.stored,
        spilledEvents: summary.spilled,
        droppedEvents: summary.dropped,
        // ACK_LEVEL=disk: neither S3 nor the DLQ took them; in the WAL for the next start, not lost.
        keptEvents: summary.kept,
        // 0 unless the spill outlived its grace after the deadline (a hung disk) or the watchdog fired.
        unaccountedEvents: summary.unaccounted,
        dlqDroppedEvents: dlqDroppedTotal,
        dlqDroppedByReason: dlqDropped,
      },
      'shutdown complete',
    );
    this.#end({ summary, code });
  }
}

/**
 * Shuts down on SIGTERM, SIGINT, SIGHUP or a crash, then exits. Returns what to call on a crash
 * found and logged elsewhere (a worker thread's): as for an uncaught exception.
 */
export function shutDownOnSignals(shutdown: Shutdown, log: Logger, endThreads?: (ms: number) => Promise<boolean>): () => void {
  // `ended` never rejects; the handler is for the lint's sake and a bug alone.
  shutdown.ended.then(
    ({ code }) => exit(code, log, endThreads),
    () => process.exit(1),
  );
  // SIGHUP too: there is no configuration to reload, and dying on a closed terminal would lose
  // everything held in memory.
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => shutdown.begin(signal, 0));
  // A bug must not cost the events held in memory: shut down as for a signal, then exit 1.
  const crashed = (err: unknown): void => {
    log.fatal({ err }, 'unexpected error: shutting down');
    shutdown.begin('crash', 1);
  };
  process.on('uncaughtException', crashed);
  process.on('unhandledRejection', crashed);
  return () => shutdown.begin('crash', 1);
}

/** WORKERS > 1: Node aborts (SIGABRT) a process that exits while a thread still holds connections. */
function exit(code: number, log: Logger, endThreads?: (ms: number) => Promise<boolean>): void {
  if (endThreads === undefined) process.exit(code);
  endThreads(THREADS_END_MS).then(
    (ended) => {
      if (ended) process.exit(code);
      // Rather than let Node abort with SIGABRT (and a core dump where they are kept): what
      // could be kept is already stored or spilled, and the summary is written.
      log.error({ timeoutMs: THREADS_END_MS }, 'shutdown: worker threads did not end in time; the process kills itself (SIGKILL)');
      process.kill(process.pid, 'SIGKILL');
    },
    () => process.kill(process.pid, 'SIGKILL'),
  );
}

/** Runs one shutdown step; a failure or a hang past STEP_TIMEOUT_MS is logged, never fatal. */
async function step(log: Logger, name: string, work: () => unknown): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), STEP_TIMEOUT_MS)));
    if ((await Promise.race([Promise.resolve().then(work), timedOut])) === 'timeout') {
      log.error({ step: name, timeoutMs: STEP_TIMEOUT_MS }, 'shutdown: a step did not finish in time, going on');
    }
  } catch (err) {
    log.error({ step: name, err }, 'shutdown: a step failed, going on');
  } finally {
    clearTimeout(timer);
  }
}
