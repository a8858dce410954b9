/**
 * Seeded random numbers for initialisation, sampling and shuffles (xoroshiro128+ from pure-rand).
 * The state is a short array of integers, so it can be saved and restored exactly.
 *
 * The generator's 128-bit state is filled from the seed by SplitMix64, as xoroshiro's authors
 * advise: seeded directly, its first outputs are nearly linear in the seed (the first uniform of
 * seed s is about 1 − 1.5e-8·s), and every bit of a seed up to 2^53 counts.
 */
import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { xoroshiro128plusFromState } from 'pure-rand/generator/xoroshiro128plus';

type Generator = ReturnType<typeof xoroshiro128plusFromState>;

const MASK64 = (1n << 64n) - 1n;

/** SplitMix64's output for the counter value x (64-bit arithmetic). */
function splitMix64(x: bigint): bigint {
  let z = x & MASK64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return z ^ (z >> 31n);
}

/**
 * The generator's state words for a seed: two consecutive SplitMix64 outputs from the seed (as a
 * 64-bit two's-complement integer), split into 32-bit halves in the order the state is kept
 * ([high, low] of each 64-bit word). Never all zero (SplitMix64 is a bijection of its counter, and
 * two consecutive counters cannot both map to 0).
 */
function seedState(seed: number): number[] {
  const golden = 0x9e3779b97f4a7c15n;
  const start = BigInt.asUintN(64, BigInt(seed));
  const words: number[] = [];
  for (const k of [1n, 2n]) {
    const w = splitMix64(start + k * golden);
    words.push(Number(BigInt.asIntN(32, w >> 32n)), Number(BigInt.asIntN(32, w)));
  }
  return words;
}

export class Rng {
  #gen: Generator;

  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer (got ${seed})`);
    this.#gen = xoroshiro128plusFromState(seedState(seed));
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
