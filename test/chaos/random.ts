// Seeded randomness for the chaos soak: one seed fixes the whole schedule (fault phases, restarts,
// signals, odd clients), so a failing run can be replayed by its seed.
import { createHash } from 'node:crypto';

export class Random {
  #state: number;

  constructor(readonly seed: number) {
    this.#state = seed >>> 0;
  }

  /**
   * An independent stream for one part of the soak: each part draws from its own, so a part that
   * draws more often in one run (it depends on timing) does not shift the others' schedules.
   */
  fork(name: string): Random {
    return new Random(createHash('sha256').update(`${this.seed}/${name}`).digest().readUInt32LE(0));
  }

  /** Uniform in [0, 1): mulberry32, small and good enough for a test schedule. */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let x = this.#state;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  }

  /** An integer in [min, max]. */
  between(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  /** One of `choices`, each as likely as its weight. */
  weighted<T>(choices: readonly (readonly [T, number])[]): T {
    const total = choices.reduce((sum, [, weight]) => sum + weight, 0);
    let r = this.next() * total;
    for (const [choice, weight] of choices) if ((r -= weight) < 0) return choice;
    return choices.at(-1)![0];
  }
}
