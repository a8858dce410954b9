/**
 * Seeded random numbers for initialisation and synthetic data (xoroshiro128+ from pure-rand).
 * The state is a short array of integers, so it can be saved and restored exactly.
 */
import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { xoroshiro128plus, xoroshiro128plusFromState } from 'pure-rand/generator/xoroshiro128plus';

type Generator = ReturnType<typeof xoroshiro128plus>;

export class Rng {
  #gen: Generator;

  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer (got ${seed})`);
    this.#gen = xoroshiro128plus(seed | 0);
  }

  static fromState(state: readonly number[]): Rng {
    const rng = new Rng(0);
    rng.#gen = xoroshiro128plusFromState(state);
    return rng;
  }

  state(): number[] {
    return [...this.#gen.getState()];
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    return uniformFloat64(this.#gen);
  }

  /** Uniform in [lo, hi). */
  range(lo: number, hi: number): number {
    return lo + (hi - lo) * this.uniform();
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** Standard normal (Box–Muller). */
  normal(): number {
    const u = 1 - this.uniform(); // (0, 1]
    const v = this.uniform();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  fillUniform<T extends Float32Array | Float64Array>(out: T, lo: number, hi: number): T {
    for (let i = 0; i < out.length; i++) out[i] = this.range(lo, hi);
    return out;
  }

  fillNormal<T extends Float32Array | Float64Array>(out: T, std = 1): T {
    for (let i = 0; i < out.length; i++) out[i] = std * this.normal();
    return out;
  }
}
