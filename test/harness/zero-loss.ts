// Zero-loss harness: a load client that posts events with unique ids and records exactly which
// were acknowledged with 202, and an audit that reads every object in S3 (and, if asked, every
// DLQ file) and reports missing, duplicated and unexpected ids beside the server's own counters.
// Used by the fault scenarios in test/ and by the benchmark.
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { S3Client } from '@aws-sdk/client-s3';
import type { Test } from 'tap';
import { readObjects } from '../helpers/s3.js';

export interface LoadOptions {
  /** Base URL of the server, e.g. http://127.0.0.1:8080; undefined: none until retarget(). */
  readonly url: string | undefined;
  readonly concurrency: number;
  readonly eventsPerRequest: number;
  /** Upper bound on requests, so a run always ends. */
  readonly maxRequests: number;
  readonly format?: 'json' | 'ndjson';
  /** Bytes of padding per event, to size events like real ones. */
  readonly padBytes?: number;
  /** The rest of event `n` of the run, beside its `id`, instead of the padding: the benchmark's realistic events. */
  readonly fields?: (n: number) => Record<string, unknown>;
  /** Per-request bound: a request still unanswered then is recorded as `timeout` (a hang). */
  readonly requestTimeoutMs?: number;
  /** Pause of each request loop between two requests, to keep a long load from taking every core. */
  readonly paceMs?: number;
}

/** Posts events until stopped or out of requests; knows which ids the server acknowledged. */
export class AckingClient {
  readonly runId = randomUUID().slice(0, 8);
  /** Ids answered 202. */
  readonly acked = new Set<string>();
  /** Ids of requests that got no answer (connection lost): the server may or may not have them. */
  readonly uncertain = new Set<string>();
  /** Outcome counts: `202`, `503 queue_full`, `503 shutting_down`, `ECONNREFUSED`, `timeout`, ... */
  readonly outcomes = new Map<string, number>();
  /** Outcome counts of requests sent after markSignal() (e.g. a SIGTERM). */
  readonly outcomesAfterMark = new Map<string, number>();
  #requests = 0;
  #stopped = false;
  #marked = false;
  #url: string | undefined;
  readonly #pad: string;

  constructor(private readonly options: LoadOptions) {
    this.#pad = 'x'.repeat(options.padBytes ?? 0);
    this.#url = options.url;
  }

  /**
   * Sends the next requests to `url` (a restarted server listens on a new port); undefined holds
   * them until a url is given, so nothing goes to a port another process may have taken since.
   */
  retarget(url: string | undefined): void {
    this.#url = url;
  }

  get requests(): number {
    return this.#requests;
  }

  /** Runs `concurrency` request loops until stop() or maxRequests. */
  async run(): Promise<void> {
    await Promise.all(Array.from({ length: this.options.concurrency }, () => this.#loop()));
  }

  stop(): void {
    this.#stopped = true;
  }

  /** From now on outcomes are also counted in outcomesAfterMark. */
  markSignal(): void {
    this.#marked = true;
  }

  async #loop(): Promise<void> {
    const { eventsPerRequest, maxRequests, format = 'json', requestTimeoutMs = 10_000, paceMs = 0 } = this.options;
    while (!this.#stopped && this.#requests < maxRequests) {
      if (paceMs > 0) await sleep(paceMs);
      const url = this.#url;
      if (url === undefined) {
        await sleep(20);
        continue;
      }
      const first = this.#requests++ * eventsPerRequest;
      const ids = Array.from({ length: eventsPerRequest }, (_, i) => `${this.runId}-${first + i}`);
      const { fields } = this.options;
      const events = ids.map((id, i) => JSON.stringify(fields === undefined ? { id, pad: this.#pad } : { id, ...fields(first + i) }));
      const body = format === 'json' ? `[${events.join(',')}]` : `${events.join('\n')}\n`;
      const afterMark = this.#marked;
      let outcome: string;
      try {
        const res = await fetch(`${url}/v1/events`, {
          method: 'POST',
          body,
          headers: { 'content-type': format === 'json' ? 'application/json' : 'application/x-ndjson' },
          signal: AbortSignal.timeout(requestTimeoutMs),
        });
        const answer = (await res.json()) as { error?: string };
        outcome = res.status === 202 ? '202' : `${res.status} ${answer.error ?? ''}`.trim();
        if (res.status === 202) for (const id of ids) this.acked.add(id);
      } catch (err) {
        const e = err as Error & { cause?: { code?: string } };
        outcome = e.name === 'TimeoutError' ? 'timeout' : (e.cause?.code ?? e.name);
        for (const id of ids) this.uncertain.add(id);
        // The server is gone or going: no point hammering a closed port.
        if (outcome === 'ECONNREFUSED') await sleep(20);
      }
      count(this.outcomes, outcome);
      if (afterMark) count(this.outcomesAfterMark, outcome);
    }
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function count(map: Map<string, number>, key: string): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

export interface AuditReport {
  readonly acked: number;
  /** Events of this run found in S3 (and in the DLQ, when one was given). */
  readonly found: number;
  readonly inS3: number;
  readonly inDlq: number;
  /** Acknowledged, found nowhere. */
  readonly missing: string[];
  /** Found more than once, across S3 and the DLQ. */
  readonly duplicated: string[];
  /** Found but never acknowledged, and not from a request whose answer was lost (this run's ids only). */
  readonly unexpected: string[];
  readonly objects: number;
}

/** A test's verdict on an audit: every acknowledged event stored once, nothing refused stored. */
export function assertExactlyOnce(t: Test, report: AuditReport, label: string): void {
  t.same(report.missing.slice(0, 5), [], `${label}: no acknowledged event missing (${report.missing.length})`);
  t.same(report.duplicated.slice(0, 5), [], `${label}: no event stored twice (${report.duplicated.length})`);
  t.same(report.unexpected.slice(0, 5), [], `${label}: nothing stored that was refused (${report.unexpected.length})`);
  t.ok(report.acked > 0, `${label}: ${report.acked} events acknowledged, ${report.inS3} in S3, ${report.inDlq} in the DLQ`);
}

/** Reads S3 (and `dlqDir`, if given) and compares what is there with what the client was told. */
export async function audit(client: AckingClient, s3: { client: S3Client; bucket?: string; prefix?: string }, dlqDir?: string): Promise<AuditReport> {
  const objects = await readObjects(s3.client, s3.bucket, s3.prefix);
  // Only this run's events count: a bucket may hold other runs' too.
  const ours = (id: string) => id.startsWith(`${client.runId}-`);
  const inS3 = objects.flatMap((o) => o.records.map((r) => String(r.event.id))).filter(ours);
  const inDlq = dlqDir === undefined ? [] : dlqIds(dlqDir).filter(ours);
  const seen = new Map<string, number>();
  for (const id of [...inS3, ...inDlq]) seen.set(id, (seen.get(id) ?? 0) + 1);
  return {
    acked: client.acked.size,
    found: seen.size,
    inS3: inS3.length,
    inDlq: inDlq.length,
    missing: [...client.acked].filter((id) => !seen.has(id)),
    duplicated: [...seen].filter(([, n]) => n > 1).map(([id]) => id),
    unexpected: [...seen.keys()].filter((id) => !client.acked.has(id) && !client.uncertain.has(id)),
    objects: objects.length,
  };
}

/** Event ids in every complete DLQ file (plain gzip files: the metadata header is skipped by gunzip). */
function dlqIds(dir: string): string[] {
  return readdirSync(dir)
    .filter((name) => name.endsWith('.jsonl.gz') && !name.startsWith('.tmp-'))
    .flatMap((name) =>
      gunzipSync(readFileSync(join(dir, name)))
        .toString('utf8')
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => String((JSON.parse(line) as { event: { id: unknown } }).event.id)),
    );
}

/** The server's own count of where events went, from its /metrics text. */
export interface ServerCounters {
  accepted: number;
  stored: number;
  spilled: number;
  reuploaded: number;
  dropped: number;
  dlqEvents: number;
}

/** A server's counters, read from its /metrics. */
export async function countersOf(server: { readonly metricsUrl: string }): Promise<ServerCounters> {
  return serverCounters(await (await fetch(server.metricsUrl)).text());
}

export function serverCounters(metricsText: string): ServerCounters {
  const sum = (name: string) => {
    // A renamed metric must fail the audit, not read as 0.
    if (!metricsText.includes(`# TYPE ${name} `)) throw new Error(`/metrics exports no metric named ${name}`);
    return metricsText
      .split('\n')
      .filter((line) => line.startsWith(`${name} `) || line.startsWith(`${name}{`))
      .reduce((total, line) => total + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
  };
  return {
    accepted: sum('ingest_events_accepted_total'),
    stored: sum('s3_events_stored_total'),
    spilled: sum('dlq_events_spilled_total'),
    reuploaded: sum('dlq_events_reuploaded_total'),
    dropped: sum('dlq_events_dropped_total'),
    dlqEvents: sum('dlq_events_current'),
  };
}
