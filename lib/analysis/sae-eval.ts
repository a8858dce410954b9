/**
 * An SAE evaluated on held-out contexts of its language model: reconstruction (MSE, fraction of
 * variance unexplained), sparsity (L0), feature density (dead and ultra-low-density features, the
 * log10 density histogram), and next-token loss clean / with the reconstruction spliced in / with
 * the hook zero-ablated, with the fraction of loss recovered as "Towards Monosemanticity" defines
 * it, (L_zero − L_spliced) / (L_zero − L_clean), and the mean KL divergence of the spliced
 * model's next-token distribution from the clean one.
 *
 * Position 0 of every context (the BOS token, whose activations the SAE is not trained on) is left
 * out of the reconstruction and density statistics and keeps its own activation when splicing and
 * when zero-ablating, so both losses measure the positions the SAE is for.
 */
import { saeSplice, zeroAblate } from '../lm/interventions.js';
import type { Gpt2Model, Intervention } from '../lm/model.js';
import type { SparseAutoencoder } from '../sae/sae.js';

export interface SaeEvaluation {
  /** Contexts and activation rows (positions 1..T−1) evaluated. */
  contexts: number;
  rows: number;
  /** Mean over rows of ‖x − x̂‖² / d (the trainer's MSE). */
  mse: number;
  /** Σ‖x − x̂‖² / Σ‖x − mean(x)‖²: the fraction of variance unexplained. */
  fvu: number;
  /** Mean active features per row. */
  l0: number;
  /** Features that never fired on the rows. */
  dead: number;
  /** Features with density in (0, 1e-6) — only resolvable with more than 1e6 rows; those at 0 are dead. */
  ultraLow: number;
  dSae: number;
  /** Fraction of rows each feature fired on. */
  density: Float64Array;
  loss: { clean: number; spliced: number; zeroAblated: number; fractionRecovered: number; klSpliced: number; tokens: number };
}

export interface SaeEvalOptions {
  /** Contexts per forward (default 8). */
  batch?: number;
}

/** Evaluates `sae` at `hook` of `model` over `contexts` [count, T] of token ids. */
export async function evaluateSae(model: Gpt2Model, sae: SparseAutoencoder, hook: string, contexts: Int32Array, T: number, options: SaeEvalOptions = {}): Promise<SaeEvaluation> {
  const batch = options.batch ?? 8;
  if (!Number.isSafeInteger(T) || T < 2 || contexts.length % T !== 0 || contexts.length === 0) {
    throw new RangeError(`contexts must hold whole contexts of T >= 2 tokens (got ${contexts.length} tokens, T ${T})`);
  }
  if (!Number.isSafeInteger(batch) || batch < 1) throw new RangeError(`batch must be a positive integer (got ${batch})`);
  const width = model.hooks.find((h) => h.name === hook)?.width;
  if (width === undefined) throw new RangeError(`the model has no hook '${hook}'`);
  if (width !== sae.dIn) throw new RangeError(`the SAE reads ${sae.dIn}-wide activations but ${hook} is ${width} wide`);
  const d = sae.dIn;
  const n = sae.dSae;
  const count = contexts.length / T;
  const fired = new Float64Array(n);
  const sumX = new Float64Array(d);
  let sumSqX = 0;
  let sumSqErr = 0;
  let active = 0;
  let rows = 0;
  const loss = { clean: 0, spliced: 0, zeroAblated: 0, kl: 0, tokens: 0 };

  for (let c0 = 0; c0 < count; c0 += batch) {
    const m = Math.min(batch, count - c0);
    const ids = contexts.subarray(c0 * T, (c0 + m) * T);

    // Reconstruction and density on positions 1..T−1.
    const { captured } = await model.forward(ids, m, { capture: [hook] });
    using x = captured[hook]!;
    using f = await sae.encode(x);
    using xhat = await sae.decode(f);
    const xs = x.toArray() as Float32Array; // [m·T, d]
    const xh = xhat.toArray() as Float32Array;
    const fs = f.toArray() as Float32Array; // [m·T, n]
    for (let r = 0; r < m * T; r++) {
      if (r % T === 0) continue; // the BOS position
      const xr = r * d; // row r of x and x̂
      for (let j = 0; j < d; j++) {
        const v = xs[xr + j]!;
        const e = v - xh[xr + j]!;
        sumX[j]! += v;
        sumSqX += v * v;
        sumSqErr += e * e;
      }
      const fr = r * n; // row r of f
      for (let i = 0; i < n; i++) {
        if (fs[fr + i]! > 0) {
          fired[i]! += 1;
          active += 1;
        }
      }
      rows += 1;
    }

    // Next-token loss clean, spliced (BOS rows kept) and zero-ablated, with the spliced KL.
    const clean = await model.forward(ids, m, { loss: true, logits: true });
    using cleanLogits = clean.logits!;
    const spliced = await model.forward(ids, m, { loss: true, logits: true, interventions: { [hook]: keepBosRows(saeSplice(sae), T) } });
    using splicedLogits = spliced.logits!;
    const zero = await model.forward(ids, m, { loss: true, interventions: { [hook]: keepBosRows(zeroAblate(), T) } });
    const k = clean.loss!.perToken.length;
    loss.clean += clean.loss!.mean * k;
    loss.spliced += spliced.loss!.mean * k;
    loss.zeroAblated += zero.loss!.mean * k;
    loss.kl += klSum(cleanLogits.toArray() as Float32Array, splicedLogits.toArray() as Float32Array, m, T, model.config.vocabSize);
    loss.tokens += k;
  }

  let centred = sumSqX;
  for (let j = 0; j < d; j++) centred -= (sumX[j]! * sumX[j]!) / rows; // Σ‖x − mean‖² = Σ‖x‖² − ‖Σx‖²/N per dimension
  const density = fired.map((c) => c / rows);
  const clean = loss.clean / loss.tokens;
  const spliced = loss.spliced / loss.tokens;
  const zeroAblated = loss.zeroAblated / loss.tokens;
  return {
    contexts: count,
    rows,
    mse: sumSqErr / (rows * d),
    fvu: sumSqErr / centred,
    l0: active / rows,
    dead: density.filter((p) => p === 0).length,
    ultraLow: density.filter((p) => p > 0 && p < 1e-6).length,
    dSae: n,
    density,
    loss: { clean, spliced, zeroAblated, fractionRecovered: (zeroAblated - spliced) / (zeroAblated - clean), klSpliced: loss.kl / loss.tokens, tokens: loss.tokens },
  };
}

/** The intervention, with each context's position-0 row restored afterwards. */
function keepBosRows(inner: Intervention, T: number): Intervention {
  return async (x, context) => {
    const width = x.shape[1]!;
    const contexts = x.shape[0]! / T;
    const saved = Array.from({ length: contexts }, (_, c) => x.readRange(c * T * width, width)); // row c·T: position 0 of context c
    await inner(x, context);
    saved.forEach((row, c) => x.writeRange(row, c * T * width));
  };
}

/** Σ over positions 0..T−2 of KL(softmax(clean) ‖ softmax(spliced)) for logits [m·T, V] (the positions that have a loss). */
function klSum(clean: Float32Array, spliced: Float32Array, m: number, T: number, V: number): number {
  let total = 0;
  for (let c = 0; c < m; c++) {
    for (let t = 0; t + 1 < T; t++) {
      const base = (c * T + t) * V; // logits row of position t of context c
      const lseP = logSumExp(clean, base, V);
      const lseQ = logSumExp(spliced, base, V);
      let kl = 0;
      for (let v = 0; v < V; v++) {
        const logP = clean[base + v]! - lseP;
        kl += Math.exp(logP) * (logP - (spliced[base + v]! - lseQ));
      }
      total += kl;
    }
  }
  return total;
}

function logSumExp(a: Float32Array, offset: number, length: number): number {
  let max = -Infinity;
  for (let i = 0; i < length; i++) max = Math.max(max, a[offset + i]!);
  let s = 0;
  for (let i = 0; i < length; i++) s += Math.exp(a[offset + i]! - max);
  return max + Math.log(s);
}

/** Rows of the log10-density histogram: features per bin of width `binWidth` from −10 (dead features in their own row). */
export function densityHistogram(density: Float64Array, binWidth = 0.5): { dead: number; bins: { from: number; to: number; count: number }[] } {
  const bins = new Map<number, number>();
  let dead = 0;
  for (const p of density) {
    if (p === 0) {
      dead += 1;
      continue;
    }
    const bin = Math.floor(Math.log10(p) / binWidth);
    bins.set(bin, (bins.get(bin) ?? 0) + 1);
  }
  const keys = [...bins.keys()].sort((a, b) => a - b);
  return { dead, bins: keys.map((b) => ({ from: b * binWidth, to: (b + 1) * binWidth, count: bins.get(b)! })) };
}
