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
  /**
   * WORKERS > 1: ends the worker threads (again, if a step did); true once all have, within
   * `ms`. Node aborts (SIGABRT) a process that exits while a thread still holds connections.
   */
  endThreads?(ms: number): Promise<boolean>;
}

/** Returns what to call on a crash found and logged elsewhere (a worker thread's): as for an uncaught exception. */
export function shutDownOnSignals(plan: ShutdownPlan): () => void {
  const { log } = plan;
  let started = false;
  let exitCode = 0;
  let hurry: () => void = () => {};

  const run = async (reason: string): Promise<void> => {
    const watchdogMs = plan.timeoutMs + SPILL_GRACE_MS + plan.steps.length * STEP_TIMEOUT_MS + WATCHDOG_SLACK_MS;
    setTimeout(() => {
      log.error({ watchdogMs }, 'shutdown: did not end in time, exiting with what is known');
      finish(plan.pipeline.summary(), 1);
    }, watchdogMs).unref();
    await step(log, 'stopping intake', () => plan.stopAccepting());
    // Only now: worker threads answer on their own, and must already refuse whoever read this line.
    log.info({ signal: reason, timeoutMs: plan.timeoutMs }, 'shutdown: no longer accepting events, uploading what is held');
    const deadline = new Promise<void>((resolve) => {
      hurry = resolve;
      setTimeout(resolve, plan.timeoutMs).unref();
    });
    const summary = await plan.pipeline.close(deadline);
    for (const [name, work] of plan.steps) await step(log, name, work);
    finish(summary, exitCode);
  };

  let finished = false;
  const finish = (summary: Summary, code: number): void => {
    if (finished) return;
    finished = true;
    // Evictions during the shutdown spill happen after the last scrape could see them: say so here.
    const dlqDropped = plan.dlqDropped();
    const dlqDroppedTotal = Object.values(dlqDropped).reduce((a, b) => a + b, 0);
    log[summary.unaccounted === 0 && summary.dropped === 0 && dlqDroppedTotal === 0 ? 'info' : 'error'](
      {
        uploadedInTime: summary.uploadedInTime,
        acceptedEvents: summary.accepted,
        storedEvents: summary.stored,
        spilledEvents: summary.spilled,
        droppedEvents: summary.dropped,
        // 0 unless the spill outlived its grace after the deadline (a hung disk) or the watchdog fired.
        unaccountedEvents: summary.unaccounted,
        dlqDroppedEvents: dlqDroppedTotal,
        dlqDroppedByReason: dlqDropped,
      },
      'shutdown complete',
    );
    if (plan.endThreads === undefined) process.exit(code);
    void plan.endThreads(THREADS_END_MS).then(
      (ended) => {
        if (ended) process.exit(code);
        // Rather than let Node abort with SIGABRT (and a core dump where they are kept): what
        // could be kept is already stored or spilled, and the summary is written.
        log.error({ timeoutMs: THREADS_END_MS }, 'shutdown: worker threads did not end in time; the process kills itself (SIGKILL)');
        process.kill(process.pid, 'SIGKILL');
      },
      () => process.kill(process.pid, 'SIGKILL'),
    );
  };

  const begin = (reason: string, code: number): void => {
    exitCode = Math.max(exitCode, code);
    if (!started) {
      started = true;
      // run() guards every step itself; this catch is for a bug in run() alone.
      run(reason).catch((err: unknown) => {
        log.fatal({ err: err instanceof Error ? err.stack : String(err) }, 'shutdown failed');
        finish(plan.pipeline.summary(), 1);
      });
      return;
    }
    // Nothing is dropped for a second signal: it only brings the deadline forward.
    log.warn({ signal: reason }, 'shutdown: second signal, spilling to the DLQ now');
    hurry();
  };

  // SIGHUP too: there is no configuration to reload, and dying on a closed terminal would lose
  // everything held in memory.
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => begin(signal, 0));
  // A bug must not cost the events held in memory: shut down as for a signal, then exit 1.
  const crashed = (err: unknown): void => {
    log.fatal({ err: err instanceof Error ? err.stack : String(err) }, 'unexpected error: shutting down');
    begin('crash', 1);
  };
  process.on('uncaughtException', crashed);
  process.on('unhandledRejection', crashed);
  return () => begin('crash', 1);
}

/** Runs one shutdown step; a failure or a hang past STEP_TIMEOUT_MS is logged, never fatal. */
async function step(log: Logger, name: string, work: () => unknown): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), STEP_TIMEOUT_MS)));
    if ((await Promise.race([Promise.resolve().then(work), timedOut])) === 'timeout') {
      log.error({ step: name, timeoutMs: STEP_TIMEOUT_MS }, `shutdown: ${name} did not finish in time, going on`);
    }
  } catch (err) {
    log.error({ step: name, err: (err as Error).message }, `shutdown: ${name} failed, going on`);
  } finally {
    clearTimeout(timer);
  }
}
