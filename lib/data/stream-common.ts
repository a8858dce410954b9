/**
 * Pieces shared by the seeded, resumable data streams (activation files, text contexts, token-shard
 * contexts, harvested activations): the seed of each shuffle, mixed from its purpose and position
 * so no two kinds of shuffle share a generator; Fisher–Yates orders; and the integer checks of
 * their options and saved states.
 */
import type { Rng } from '../random.js';

/** Purposes mixed into shuffle seeds: one per kind of shuffle, so none shares a generator. */
export const SEED_PURPOSE = {
  /** activation-source.ts: the order of an epoch's chunks. */
  FILE_EPOCH_ORDER: 1,
  /** activation-source.ts: the order of a window's rows. */
  FILE_WINDOW_ORDER: 2,
  /** contexts.ts: the order of a window's documents. */
  DOCUMENT_ORDER: 3,
  /** shard-contexts.ts: the order of an epoch's contexts. */
  SHARD_CONTEXT_ORDER: 4,
  /** lm-activations.ts: the positions kept of one context. */
  CONTEXT_POSITIONS: 5,
  /** lm-activations.ts: the order a window's rows are served in. */
  HARVEST_WINDOW_ORDER: 6,
  /** lm-activations.ts: the order of a pass served from the stored first pass. */
  STORED_PASS_ORDER: 7,
  /** lm-run.ts and harvest: the context stream's seed for each pass after the first. */
  CORPUS_PASS: 8,
} as const;

/** The seed of a context stream's pass `pass` over a corpus: `seed` for the first, one of its own for each later one. */
export function passSeed(seed: number, pass: number): number {
  return pass === 0 ? seed : mixSeed([SEED_PURPOSE.CORPUS_PASS, seed, pass]);
}

/** murmur3's 32-bit finaliser: a bijection that spreads every input bit over the output. */
function fmix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/**
 * The 32-bit seed of one shuffle: each integer part (purpose, seed, epoch, window), low 32 bits
 * then high bits, is xored into a running fmix32 hash.
 */
export function mixSeed(parts: readonly number[]): number {
  let hash = 0x6a09e667;
  for (const part of parts) {
    hash = fmix32(hash ^ (part >>> 0));
    hash = fmix32(hash ^ (Math.floor(part / 2 ** 32) >>> 0));
  }
  return hash | 0;
}

/** Swaps drawn ahead at a time: the draws, then the swaps, each in a loop of its own. */
const SWAP_CHUNK = 1 << 16;

/**
 * Fisher–Yates steps i = from, from − 1, .., stop + 1 on order: each swaps order[i] with
 * order[rng.int(i + 1)]. The chunk's draws are made first, then its swaps, in separate loops: the
 * same draws in the same order, but the swaps' random reads (an order of millions of rows is larger
 * than the caches) overlap each other instead of waiting behind the generator. draws holds at
 * least from − stop entries. Returns stop.
 */
function fisherYatesSteps(order: Uint32Array, rng: Rng, from: number, stop: number, draws: Uint32Array): number {
  const count = from - stop;
  for (let k = 0; k < count; k++) draws[k] = rng.int(from - k + 1); // the draw of step i = from − k
  for (let k = 0; k < count; k++) {
    const i = from - k;
    const j = draws[k]!;
    const held = order[i]!;
    order[i] = order[j]!;
    order[j] = held;
  }
  return stop;
}

/** [0, 1, .., n − 1]. */
function identity(n: number): Uint32Array {
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  return order;
}

/** A random order of [0, n): Fisher–Yates from `rng`. */
export function permutation(n: number, rng: Rng): Uint32Array {
  const order = identity(n);
  const draws = new Uint32Array(Math.min(SWAP_CHUNK, n));
  for (let i = n - 1; i > 0; ) i = fisherYatesSteps(order, rng, i, Math.max(0, i - SWAP_CHUNK), draws);
  return order;
}

/**
 * permutation(n, rng), the same draws in the same order, yielding to the event loop every `chunk`
 * swaps, so that a long order (millions of rows) is drawn between other work instead of blocking it.
 */
export async function permutationYielding(n: number, rng: Rng, chunk = SWAP_CHUNK): Promise<Uint32Array> {
  positiveInteger('chunk', chunk);
  const order = identity(n);
  const draws = new Uint32Array(Math.min(chunk, n));
  for (let i = n - 1; i > 0; ) {
    i = fisherYatesSteps(order, rng, i, Math.max(0, i - chunk), draws);
    if (i > 0) await new Promise((resolve) => setImmediate(resolve));
  }
  return order;
}

export function positiveInteger(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive integer (got ${String(value)})`);
  }
  return value;
}

export function nonNegativeInteger(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${name} must be a non-negative integer (got ${String(value)})`);
  }
  return value;
}
