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
  stopTokens?: readonly number[];
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
  // Candidates by decreasing logit; top-k, softmax at the temperature, then top-p.
  let order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]! || a - b);
  if (options.topK > 0 && options.topK < order.length) {
    // Every token tied with the k-th stays a candidate (as HF's top-k removes only logits below it).
    let k = options.topK;
    const kth = logits[order[k - 1]!]!;
    while (k < order.length && logits[order[k]!]! === kth) k++;
    order = order.slice(0, k);
  }
  const max = logits[order[0]!]!;
  const weights = order.map((v) => Math.exp((logits[v]! - max) / options.temperature));
  const total = weights.reduce((a, b) => a + b, 0);
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
  const kept = weights.slice(0, keep);
  const keptTotal = kept.reduce((a, b) => a + b, 0);
  let u = rng.uniform() * keptTotal;
  for (let i = 0; i < keep; i++) {
    u -= kept[i]!;
    if (u < 0) return order[i]!;
  }
  return order[keep - 1]!;
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
  if (options.stopTokens !== undefined && (!Array.isArray(options.stopTokens) || !options.stopTokens.every((t) => Number.isSafeInteger(t)))) {
    throw new TypeError('stopTokens must be an array of token ids');
  }
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
  const stop = new Set(options.stopTokens ?? []);
  const V = model.config.vocabSize;
  const out: number[] = [];
  using cache = model.createCache(1, capacity);
  let input = prompt;
  while (out.length < maxNewTokens) {
    const result = await model.forward(input, 1, { cache, logits: true, ...(options.interventions ? { interventions: options.interventions } : {}) });
    using logits = result.logits!;
    const last = logits.readRange((input.length - 1) * V, V) as Float32Array; // logits[T − 1, :]
    const token = pickToken(last, { temperature, topK, topP }, rng);
    out.push(token);
    if (stop.has(token)) break;
    input = Int32Array.of(token);
  }
  return Int32Array.from(out);
}
