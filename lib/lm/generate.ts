/**
 * Text generation with a KV cache: the prompt runs through the model once, then each new token
 * alone. Greedy, or sampling with temperature, top-k and top-p (nucleus) from a seeded generator.
 * Interventions (steering, SAE splicing) stay active at every step.
 */
import { Rng } from '../random.js';
import type { Gpt2Model, Intervention } from './model.js';

export interface GenerateOptions {
  maxNewTokens: number;
  /** 0 (or greedy: true) picks the most likely token. Default 1. */
  temperature?: number;
  greedy?: boolean;
  /** Sample among the k most likely tokens only (0: no limit). */
  topK?: number;
  /** Sample among the smallest set of tokens whose probability reaches p (1: no limit). */
  topP?: number;
  seed?: number;
  interventions?: Readonly<Record<string, Intervention>>;
  /** Stop after producing one of these tokens (it is included in the output). */
  stopTokens?: readonly number[] | Int32Array;
  /**
   * Pick only ids below this (default: the model's vocabulary): a tokenizer's vocabulary, where the
   * model's embedding is padded beyond it (e.g. 50,304 rows for GPT-2's 50,257 tokens).
   */
  vocabularyLimit?: number;
}

/** Picks a token from one row of logits. */
export function pickToken(logits: Float32Array, options: { temperature: number; topK: number; topP: number }, rng: Rng): number {
  const bad = logits.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new RangeError(`the logit of token ${bad} is ${logits[bad]}: the model's output is not finite (an intervention or steering value may have made it so)`);
  if (options.temperature === 0) {
    let best = 0;
    for (let v = 1; v < logits.length; v++) if (logits[v]! > logits[best]!) best = v;
    return best;
  }
  const filtered = (options.topK > 0 && options.topK < logits.length) || options.topP < 1;
  if (!filtered) {
    // Every token is a candidate: drawn from the softmax at the temperature in id order, no sort.
    let max = logits[0]!;
    for (let v = 1; v < logits.length; v++) if (logits[v]! > max) max = logits[v]!;
    const weights = new Float64Array(logits.length);
    for (let v = 0; v < logits.length; v++) weights[v] = Math.exp((logits[v]! - max) / options.temperature);
    return drawIndex(weights, weights.length, rng);
  }
  // Candidates by decreasing logit; top-k, softmax at the temperature, then top-p.
  let order = byDecreasingLogit(logits);
  if (options.topK > 0 && options.topK < order.length) {
    // Every token tied with the k-th stays a candidate (as HF's top-k removes only logits below it).
    let k = options.topK;
    const kth = logits[order[k - 1]!]!;
    while (k < order.length && logits[order[k]!]! === kth) k++;
    order = order.subarray(0, k);
  }
  const max = logits[order[0]!]!;
  const weights = new Float64Array(order.length);
  for (let i = 0; i < order.length; i++) weights[i] = Math.exp((logits[order[i]!]! - max) / options.temperature);
  let total = 0;
  for (const w of weights) total += w;
  let keep = order.length;
  if (options.topP < 1) {
    let cumulative = 0;
    for (let i = 0; i < order.length; i++) {
      cumulative += weights[i]! / total;
      if (cumulative >= options.topP) {
        keep = i + 1;
        break;
      }
    }
  }
  return order[drawIndex(weights, keep, rng)]!;
}

/**
 * Index i < count drawn with probability weights[i] / Σ weights[0..count) (one uniform draw). Where
 * rounding leaves the draw past the end, the last index of nonzero weight.
 */
function drawIndex(weights: Float64Array, count: number, rng: Rng): number {
  let total = 0;
  for (let i = 0; i < count; i++) total += weights[i]!;
  let u = rng.uniform() * total;
  for (let i = 0; i < count; i++) {
    u -= weights[i]!;
    if (u < 0) return i;
  }
  let last = count - 1;
  while (last > 0 && weights[last] === 0) last--;
  return last;
}

/**
 * The ids of `logits` (finite) by decreasing logit, ties by increasing id. Sorted as numbers, not
 * through a comparator: id v's key is (2^32 − 1 − m(logit)) · 2^21 + v, m mapping float32 bit
 * patterns to unsigned integers in the floats' order (−0 as +0), exact in a double for up to 2^21 ids.
 */
function byDecreasingLogit(logits: Float32Array): Int32Array {
  const n = logits.length;
  if (n > 2 ** 21) throw new RangeError(`at most 2^21 logits can be ordered (got ${n})`);
  const bits = new Uint32Array(logits.buffer, logits.byteOffset, n); // a Float32Array's offset is 4-aligned
  const keys = new Float64Array(n);
  for (let v = 0; v < n; v++) {
    const b = bits[v] === 0x80000000 ? 0 : bits[v]!; // −0 as +0
    const ordered = b & 0x80000000 ? ~b >>> 0 : (b | 0x80000000) >>> 0; // m: negatives reversed below the positives
    keys[v] = (0xffffffff - ordered) * 2 ** 21 + v;
  }
  keys.sort();
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = keys[i]! % 2 ** 21;
  return order;
}

/** Positions the model runs over to continue a prompt of `promptLength` tokens by `maxNewTokens`: all but the last new token. */
export function generationPositions(promptLength: number, maxNewTokens: number): number {
  return promptLength + Math.max(0, maxNewTokens - 1);
}

/** Continues `prompt` (token ids of one sequence); returns the new tokens. */
export async function generate(model: Gpt2Model, prompt: Int32Array, options: GenerateOptions): Promise<Int32Array> {
  if (typeof options !== 'object' || options === null) throw new TypeError('generate needs options, with maxNewTokens at least');
  const { maxNewTokens } = options;
  if (!Number.isSafeInteger(maxNewTokens) || maxNewTokens < 0) throw new RangeError(`maxNewTokens must be an integer >= 0 (got ${maxNewTokens})`);
  if (!(prompt instanceof Int32Array)) throw new TypeError('the prompt must be an Int32Array of token ids');
  if (prompt.length < 1) throw new RangeError('the prompt must hold at least one token');
  const V = model.config.vocabSize;
  const stopTokens = options.stopTokens === undefined ? [] : options.stopTokens instanceof Int32Array ? Array.from(options.stopTokens) : options.stopTokens;
  if (!Array.isArray(stopTokens) || !stopTokens.every((t) => Number.isSafeInteger(t))) throw new TypeError('stopTokens must be an array (or Int32Array) of token ids');
  const outside = stopTokens.find((t) => t < 0 || t >= V);
  if (outside !== undefined) throw new RangeError(`stop token ${outside} is outside the vocabulary [0, ${V})`);
  const limit = options.vocabularyLimit ?? V;
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > V) throw new RangeError(`vocabularyLimit must be an integer in [1, ${V}], the model's vocabulary (got ${limit})`);
  const temperature = options.greedy ? 0 : (options.temperature ?? 1);
  if (!Number.isFinite(temperature) || temperature < 0) throw new RangeError(`temperature must be >= 0 (got ${temperature})`);
  const topK = options.topK ?? 0;
  const topP = options.topP ?? 1;
  if (!Number.isSafeInteger(topK) || topK < 0) throw new RangeError(`topK must be an integer >= 0 (got ${topK})`);
  if (!(topP > 0 && topP <= 1)) throw new RangeError(`topP must be in (0, 1] (got ${topP})`);
  // The last new token is never fed back: the model sees the prompt and all new tokens but the last.
  const capacity = generationPositions(prompt.length, maxNewTokens);
  if (capacity > model.config.nPositions) {
    throw new RangeError(`prompt (${prompt.length}) + maxNewTokens (${maxNewTokens}) − 1 positions exceed the model's n_positions ${model.config.nPositions}`);
  }
  const rng = new Rng(options.seed ?? 0);
  const stop = new Set(stopTokens);
  const out: number[] = [];
  using cache = model.createCache(1, capacity);
  let input = prompt;
  while (out.length < maxNewTokens) {
    const result = await model.forward(input, 1, { cache, logits: 'last', ...(options.interventions ? { interventions: options.interventions } : {}) });
    using logits = result.logits!; // [1, V]: the last position's
    const last = logits.readRange(0, limit) as Float32Array; // logits[0, :limit]
    const token = pickToken(last, { temperature, topK, topP }, rng);
    out.push(token);
    if (stop.has(token)) break;
    input = Int32Array.of(token);
  }
  return Int32Array.from(out);
}
