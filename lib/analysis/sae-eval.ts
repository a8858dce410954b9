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
 * when zero-ablating; its prediction, which no intervention changes, is left out of the losses and
 * the KL, so all of them measure the positions the SAE is for (the next tokens at 2..T−1).
 *
 * Everything is reduced on the device: per-column sums and firing counts (columnStats), per-row
 * reconstruction errors and per-row KL divergences come back to the host, never the activations,
 * features or logits.
 */
import { exceptFirstPosition, saeSplice, zeroAblate } from '../lm/interventions.js';
import type { Gpt2Model } from '../lm/model.js';
import { klRows } from '../lm/ops.js';
import { columnStats, gatherRows, rowSqDist } from '../ops.js';
import type { SparseAutoencoder } from '../sae/sae.js';
import { Tensor } from '../tensor.js';
import { checkSaeFitsHook } from './feature-activations.js';

export interface SaeEvaluation {
  /** Contexts and activation rows (positions 1..T−1) evaluated. */
  contexts: number;
  rows: number;
  /** Mean over rows of ‖x − x̂‖² / d: per element, on the model's activations as they are (the trainer's mse is ‖x − x̂‖² per row, on normalised inputs). */
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
  /** Contexts per forward (default 8; on CUDA enough for 8,192 tokens, at least 8). */
  batch?: number;
  /** Called after each batch with the contexts done so far and their total. */
  onProgress?: (contextsDone: number, contexts: number) => void;
}

/** Evaluates `sae` at `hook` of `model` over `contexts` [count, T] of token ids. */
export async function evaluateSae(model: Gpt2Model, sae: SparseAutoencoder, hook: string, contexts: Int32Array, T: number, options: SaeEvalOptions = {}): Promise<SaeEvaluation> {
  const batch = options.batch ?? (sae.backend === 'cuda' ? Math.max(8, Math.floor(8192 / T)) : 8);
  if (!Number.isSafeInteger(T) || T < 3 || contexts.length % T !== 0 || contexts.length === 0) {
    throw new RangeError(`contexts must hold whole contexts of T >= 3 tokens (got ${contexts.length} tokens, T ${T}): position 0 is the BOS token, and the last has no next token`);
  }
  if (!Number.isSafeInteger(batch) || batch < 1) throw new RangeError(`batch must be a positive integer (got ${batch})`);
  checkSaeFitsHook(model, sae, hook);
  const d = sae.dIn;
  const n = sae.dSae;
  const count = contexts.length / T;
  const fired = new Float64Array(n);
  const sumX = new Float64Array(d);
  let sumSqX = 0;
  let sumSqErr = 0;
  let rows = 0;
  const loss = { clean: 0, spliced: 0, zeroAblated: 0, kl: 0, tokens: 0 };

  // Rows c·T + t for t = 1..T−1 of a batch of `batch` contexts: the positions the SAE is for.
  const keptRows = (m: number): Int32Array => {
    const keep = new Int32Array(m * (T - 1));
    for (let c = 0; c < m; c++) for (let t = 1; t < T; t++) keep[c * (T - 1) + t - 1] = c * T + t;
    return keep;
  };

  for (let c0 = 0; c0 < count; c0 += batch) {
    const m = Math.min(batch, count - c0);
    const ids = contexts.subarray(c0 * T, (c0 + m) * T);

    // Reconstruction and density on positions 1..T−1, reduced on the device.
    const { captured } = await model.forward(ids, m, { capture: [hook] });
    using all = captured[hook]!;
    using keep = Tensor.from(keptRows(m), [m * (T - 1)], { dtype: 'i32', backend: all.backend });
    using x = Tensor.empty([m * (T - 1), d], { backend: all.backend });
    await gatherRows(all, keep, x);
    using f = await sae.encode(x);
    using xhat = await sae.decode(f);
    const xStats = await columnStats(x);
    const fStats = await columnStats(f);
    using err = await rowSqDist(x, xhat);
    for (let j = 0; j < d; j++) sumX[j]! += xStats.sum[j]!;
    for (let j = 0; j < d; j++) sumSqX += xStats.sumsq[j]!;
    for (let i = 0; i < n; i++) fired[i]! += fStats.nonzero[i]!;
    for (const e of err.toFloat32()) sumSqErr += e;
    rows += m * (T - 1);

    // Next-token loss clean, spliced (BOS rows kept) and zero-ablated, with the spliced KL.
    const clean = await model.forward(ids, m, { loss: true, logits: true });
    using cleanLogits = clean.logits!;
    const spliced = await model.forward(ids, m, { loss: true, logits: true, interventions: { [hook]: exceptFirstPosition(saeSplice(sae)) } });
    using splicedLogits = spliced.logits!;
    const zero = await model.forward(ids, m, { loss: true, interventions: { [hook]: exceptFirstPosition(zeroAblate()) } });
    // perToken [m·(T−1)]: the prediction at position t of context c at c·(T−1) + t; t = 0 left out.
    const pastBos = (perToken: Float32Array): number => {
      let sum = 0;
      for (let c = 0; c < m; c++) for (let t = 1; t < T - 1; t++) sum += perToken[c * (T - 1) + t]!;
      return sum;
    };
    loss.clean += pastBos(clean.loss!.perToken);
    loss.spliced += pastBos(spliced.loss!.perToken);
    loss.zeroAblated += pastBos(zero.loss!.perToken);
    using kl = Tensor.empty([m * T], { backend: cleanLogits.backend });
    await klRows(cleanLogits, splicedLogits, kl);
    const klPerRow = kl.toFloat32(); // [m·T]; position 0's is 0, position T−1 has no next token
    for (let r = 0; r < m * T; r++) if (r % T !== 0 && r % T !== T - 1) loss.kl += klPerRow[r]!;
    loss.tokens += m * (T - 2);
    options.onProgress?.(c0 + m, count);
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
    l0: fired.reduce((a, b) => a + b, 0) / rows,
    dead: density.filter((p) => p === 0).length,
    ultraLow: density.filter((p) => p > 0 && p < 1e-6).length,
    dSae: n,
    density,
    loss: { clean, spliced, zeroAblated, fractionRecovered: (zeroAblated - spliced) / (zeroAblated - clean), klSpliced: loss.kl / loss.tokens, tokens: loss.tokens },
  };
}

/** The ultra-low-density count as the commands print it: with its share of dSae, or n/a where `rows` (more than 1e6 needed) cannot resolve a density below 1e-6. */
export function formatUltraLow(count: number, dSae: number, rows: number, unit: string): string {
  return rows > 1e6 ? `${count} (${((100 * count) / dSae).toFixed(2)}%)` : `n/a (needs more than 1,000,000 ${unit})`;
}

/** The log10-density histogram: features per bin [b·binWidth, (b + 1)·binWidth) of log10 density, the non-empty bins in order (a feature firing on every token is in [0, binWidth)); dead features (density 0) counted apart. */
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
