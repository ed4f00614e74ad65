// One server life in the chaos soak: how it is stopped (a signal, sometimes a second one during
// the shutdown), and what it must have said by its exit: exit 0, a `shutdown complete` line with
// nothing unaccounted, and every dropped event counted.
import { setTimeout as sleep } from 'node:timers/promises';
import { serverCounters } from '../harness/zero-loss.js';
import type { Exit, LogLine, RunningServer } from '../helpers/server.js';

// Shutdown takes at most SHUTDOWN_TIMEOUT_MS, the spill's 3 s grace and four 1 s steps
// (docs/shutdown.md); past this bound the process is called hung and killed.
const EXIT_BOUND_MS = 20_000;
// Every log line that reports events lost carries their number in `events`.
const DROP_LINES = ['DLQ capacity → removed=', 'DLQ TTL → removed=', 'local DLQ save failed'];

export interface Life {
  readonly n: number;
  readonly final: boolean;
  readonly atMs: number;
  /** The signals sent, e.g. `SIGTERM`, `SIGINT +400ms`. */
  readonly signals: string[];
  exit?: Exit;
  /** The `shutdown complete` line. */
  summary?: LogLine;
  /** Dropped before the first signal: dlq_events_dropped_total read just before it (or the drop log lines, if one came in between). */
  droppedByMetric: number;
  /** Events dropped from then to the exit, from the drop log lines (the metric cannot be read once the process is gone). */
  droppedInShutdown: number;
  readonly problems: string[];
}

export function newLife(n: number, final: boolean, atMs: number): Life {
  return { n, final, atMs, signals: [], droppedByMetric: 0, droppedInShutdown: 0, problems: [] };
}

export async function metricsText(server: RunningServer): Promise<string> {
  return (await fetch(server.metricsUrl, { signal: AbortSignal.timeout(5000) })).text();
}

/** Reads the drop count, signals, waits (bounded) for the exit, and checks what the server said. */
export async function stop(server: RunningServer, life: Life, first: NodeJS.Signals, second?: { signal: NodeJS.Signals; afterMs: number }): Promise<void> {
  try {
    life.droppedByMetric = serverCounters(await metricsText(server)).dropped;
  } catch (err) {
    life.problems.push(`could not read /metrics before the signal: ${(err as Error).message}`);
  }
  const alive = () => server.child.exitCode === null && server.child.signalCode === null;
  server.child.kill(first);
  life.signals.push(first);
  const again =
    second &&
    setTimeout(() => {
      if (!alive()) return;
      server.child.kill(second.signal);
      life.signals.push(`${second.signal} +${second.afterMs}ms`);
    }, second.afterMs);
  const exit = await Promise.race([server.exited, sleep(EXIT_BOUND_MS, 'hung' as const)]);
  clearTimeout(again);
  if (exit === 'hung') {
    life.problems.push(`did not exit within ${EXIT_BOUND_MS} ms of the signal; killed (what it held in memory is lost)`);
    life.exit = await server.stop('SIGKILL');
  } else {
    life.exit = exit;
  }
  check(server, life);
}

function check(server: RunningServer, life: Life): void {
  const { logs } = server;
  if (life.exit?.code !== 0 || life.exit.signal !== null) life.problems.push(`exit ${JSON.stringify(life.exit)}, not 0; stderr: ${server.stderr().slice(-500)}`);
  life.summary = logs.find((l) => l.msg === 'shutdown complete');
  if (life.summary === undefined) life.problems.push('no `shutdown complete` line');
  else if (life.summary.unaccountedEvents !== 0) life.problems.push(`shutdown complete with unaccountedEvents ${String(life.summary.unaccountedEvents)}`);
  for (const l of logs.filter((l) => l.level === 'fatal' || l.msg.startsWith('batch lost'))) life.problems.push(`log: ${JSON.stringify(l)}`);

  // Drops before the signal are in the metric read then; each drop also has a log line, which is
  // all that is left of the ones during shutdown.
  const signalAt = logs.findIndex((l) => l.msg.startsWith('shutdown: no longer accepting'));
  const droppedIn = (lines: LogLine[]) => lines.filter((l) => DROP_LINES.some((d) => l.msg.startsWith(d))).reduce((sum, l) => sum + Number(l.events), 0);
  const loggedBefore = droppedIn(signalAt === -1 ? logs : logs.slice(0, signalAt));
  if (loggedBefore < life.droppedByMetric) life.problems.push(`dlq_events_dropped_total says ${life.droppedByMetric} dropped, the log lines only ${loggedBefore}`);
  // A drop between the metric read and the signal is in the log only.
  life.droppedByMetric = Math.max(life.droppedByMetric, loggedBefore);
  life.droppedInShutdown = signalAt === -1 ? 0 : droppedIn(logs.slice(signalAt));
  const writeFailed = logs.filter((l) => l.msg.startsWith('local DLQ save failed')).reduce((sum, l) => sum + Number(l.events), 0);
  if (life.summary !== undefined && life.summary.droppedEvents !== writeFailed) {
    life.problems.push(`shutdown complete says droppedEvents ${String(life.summary.droppedEvents)}, the write-failure log lines ${writeFailed}`);
  }
}

export function describeLife(life: Life): string {
  const s = life.summary;
  const summary = s === undefined ? 'no summary' : `accepted ${String(s.acceptedEvents)}, stored ${String(s.storedEvents)}, spilled ${String(s.spilledEvents)}, dropped ${String(s.droppedEvents)}, unaccounted ${String(s.unaccountedEvents)}${s.uploadedInTime === false ? ', deadline hit' : ''}`;
  const exit = life.exit === undefined ? '?' : (life.exit.signal ?? String(life.exit.code));
  const dropped = life.droppedByMetric + life.droppedInShutdown > 0 ? `; DLQ dropped ${life.droppedByMetric} by the signal (metric), ${life.droppedInShutdown} after it (log lines)` : '';
  return `${life.signals.join(', ')} -> exit ${exit}: ${summary}${dropped}${life.problems.length > 0 ? ` PROBLEMS: ${life.problems.join('; ')}` : ''}`;
}
