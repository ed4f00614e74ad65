// S3 flapping for the chaos soak: the real fault proxy in front of s3rver, switched from phase to
// phase on a seeded schedule between healthy, refusing connections (the proxy stops listening),
// 500 InternalError, 503 SlowDown and hanging (a PUT is accepted and never answered).
//
// The servers always point at the proxy's address, so a refused phase is a real closed port; the
// proxy comes back on the same port when it ends.
import { setTimeout as sleep } from 'node:timers/promises';
import { type Fault, type FaultProxy, type Owner, startFaultProxy } from '../helpers/fault-proxy.js';
import { eventually } from '../helpers/server.js';
import type { Random } from './random.js';

export type PhaseKind = 'healthy' | 'refused' | 'error500' | 'slowdown' | 'hang';

export interface Phase {
  readonly kind: PhaseKind;
  /** Start, in ms since the soak began. */
  readonly atMs: number;
  /** Planned length. */
  readonly ms: number;
  /** Share of PUTs the fault hits (1 for healthy and refused, which hit every one or none). */
  readonly share: number;
  /** PUTs the proxy saw during the phase. */
  puts: number;
}

// Healthy most often, so that the DLQ also drains during the run and not only at the end.
const KINDS: readonly (readonly [PhaseKind, number])[] = [
  ['healthy', 4],
  ['refused', 2],
  ['error500', 2],
  ['slowdown', 2],
  ['hang', 2],
];
// A port just freed is almost always free again at once; another process taking it in between
// is possible on a shared machine, so coming back is retried for a while before giving up.
const REOPEN_TRIES = 100;
const REOPEN_EVERY_MS = 100;

export class FlappingS3 {
  readonly phases: Phase[] = [];
  #proxy: FaultProxy | undefined;
  /** Every proxy so far: a closed one may still be forwarding a released PUT. */
  readonly #proxies: FaultProxy[] = [];
  #current: Phase | undefined;
  readonly #faultRandom: Random;

  private constructor(
    private readonly owner: Owner,
    private readonly target: { port: number },
    private readonly port: number,
    private readonly random: Random,
    private readonly startedAt: number,
    proxy: FaultProxy,
  ) {
    this.#faultRandom = random.fork('puts');
    this.#proxy = proxy;
    this.#use(proxy);
  }

  static async start(owner: Owner, target: { port: number }, random: Random, startedAt: number): Promise<FlappingS3> {
    const proxy = await startFaultProxy(owner, target);
    return new FlappingS3(owner, target, Number(new URL(proxy.endpoint).port), random, startedAt, proxy);
  }

  /** Where the servers send their PUTs: always the same address. */
  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Phase after phase, each `minMs`..`maxMs` long, until `signal` aborts; then S3 is healthy. */
  async run(signal: AbortSignal, minMs: number, maxMs: number): Promise<void> {
    while (!signal.aborted) {
      const kind = this.random.weighted(KINDS);
      const ms = this.random.between(minMs, maxMs);
      // Flapping within a phase too: most PUTs, not always all, meet the fault.
      const share = kind === 'healthy' || kind === 'refused' ? 1 : this.random.between(60, 100) / 100;
      await this.#enter({ kind, atMs: Date.now() - this.startedAt, ms, share, puts: 0 });
      await sleep(ms, undefined, { signal }).catch(() => {});
    }
    await this.heal();
  }

  /** Healthy from now on: listening, every PUT passes, stalled PUTs are answered. */
  async heal(): Promise<void> {
    if (this.#current?.kind === 'healthy') return this.#proxy!.release();
    await this.#enter({ kind: 'healthy', atMs: Date.now() - this.startedAt, ms: 0, share: 1, puts: 0 });
  }

  async #enter(phase: Phase): Promise<void> {
    const proxy = this.#proxy;
    // Stalled PUTs are let through late, as a PUT S3 stored after its client gave up: the
    // batch's fixed key must make its re-upload land on the same object.
    proxy?.release();
    if (phase.kind === 'refused') {
      this.#proxy = undefined;
      await proxy?.close();
    } else if (proxy === undefined) {
      this.#proxy = await this.#reopen();
    }
    this.#current = phase;
    this.phases.push(phase);
  }

  async #reopen(): Promise<FaultProxy> {
    for (let i = 1; ; i++) {
      try {
        const proxy = await startFaultProxy(this.owner, this.target, this.port);
        this.#use(proxy);
        return proxy;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || i === REOPEN_TRIES) throw err;
        await sleep(REOPEN_EVERY_MS);
      }
    }
  }

  /** Resolves once no PUT let through is still being written to S3 (bounded). */
  async quiet(): Promise<void> {
    await eventually(() => this.#proxies.every((p) => p.forwarding === 0), 200, 50);
  }

  #use(proxy: FaultProxy): void {
    this.#proxies.push(proxy);
    proxy.decide = () => {
      const phase = this.#current;
      // The proxy keeps every PUT's body; the soak needs only the count.
      proxy.puts.length = 0;
      if (phase === undefined) return 'pass';
      phase.puts++;
      if (phase.kind === 'healthy' || !this.#faultRandom.chance(phase.share)) return 'pass';
      return FAULTS[phase.kind];
    };
  }
}

const FAULTS: Record<Exclude<PhaseKind, 'healthy'>, Fault> = {
  refused: 'pass', // never asked: nothing listens
  error500: { status: 500, code: 'InternalError' },
  slowdown: { status: 503, code: 'SlowDown' },
  hang: 'stall',
};
