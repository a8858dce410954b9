/**
 * `monosemantic sae info DIR [--json]`: what a saved SAE (SAELens layout) is — its shape, what it
 * was trained on, our training record, its decoder norms and how often its features fire — read
 * from the files alone, without a backend.
 *
 * Density comes from sparsity.safetensors (log10 of each feature's firing density). A feature is
 * dead at log10 density <= -10 (SAELens stores log10(density + 1e-10), so never firing reads -10)
 * or -inf, and ultra-low when not dead and below -6. In --json, non-finite numbers are written as
 * the strings "-Infinity", "Infinity" and "NaN", which JSON cannot hold as numbers.
 */
import path from 'node:path';

import type { Command } from 'commander';

import { type LoadedSaeLens, loadSaeLens } from '../sae/saelens.js';

/** log10 density at or below which a feature counts as dead. */
export const DEAD_LOG10_DENSITY = -10;
/** log10 density below which a live feature counts as ultra-low density. */
export const ULTRA_LOW_LOG10_DENSITY = -6;

export interface Summary {
  min: number;
  median: number;
  max: number;
}

export interface DensitySummary {
  features: number;
  /** log10 density <= -10 or -inf. */
  dead: number;
  /** -10 < log10 density < -6. */
  ultraLow: number;
  /** Quantiles of log10 density over all features (dead ones included). */
  quantiles: { min: number; p10: number; p25: number; median: number; p75: number; p90: number; max: number };
}

export interface SaeInfo {
  path: string;
  architecture: string;
  dIn: number;
  dSae: number;
  dtype: string | null;
  metadata: LoadedSaeLens['metadata'];
  /** cfg.json's "monosemantic" block; null for SAEs saved elsewhere. */
  training: Record<string, unknown> | null;
  /** L2 norms of the decoder rows W_dec[i]. */
  decoderNorms: Summary;
  /** null when the folder has no sparsity.safetensors. */
  density: DensitySummary | null;
}

/** The q-quantile (0..1) of ascending `sorted`, interpolated linearly as numpy does by default. */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  const position = (sorted.length - 1) * q;
  const lower = Math.floor(position);
  const fraction = position - lower;
  const low = sorted[lower]!;
  if (fraction === 0) return low;
  const high = sorted[lower + 1]!;
  if (low === high || low === -Infinity) return low; // between -inf and a number: still -inf
  return low + (high - low) * fraction;
}

/** Decoder row norms and the density summary of a loaded SAE. */
export function saeInfo(dir: string, loaded: LoadedSaeLens): SaeInfo {
  const { dIn, dSae } = loaded;
  const norms = new Float64Array(dSae);
  for (let i = 0; i < dSae; i++) {
    let sumOfSquares = 0;
    for (let j = 0; j < dIn; j++) sumOfSquares += loaded.params.W_dec[i * dIn + j]! ** 2; // W_dec[i, j]
    norms[i] = Math.sqrt(sumOfSquares);
  }
  norms.sort();
  const dtype = loaded.cfg['dtype'];
  return {
    path: path.resolve(dir),
    architecture: loaded.architecture,
    dIn,
    dSae,
    dtype: typeof dtype === 'string' ? dtype : null,
    metadata: loaded.metadata,
    training: loaded.training,
    decoderNorms: { min: norms[0]!, median: quantile(norms, 0.5), max: norms[dSae - 1]! },
    density: loaded.sparsityLog10 === null ? null : densitySummary(loaded.sparsityLog10),
  };
}

export function densitySummary(log10Density: Float32Array): DensitySummary {
  let dead = 0;
  let ultraLow = 0;
  for (const value of log10Density) {
    if (value <= DEAD_LOG10_DENSITY) dead++;
    else if (value < ULTRA_LOW_LOG10_DENSITY) ultraLow++;
  }
  const sorted = Float64Array.from(log10Density).sort(); // NaN sorts last
  const at = (q: number) => quantile(sorted, q);
  return {
    features: log10Density.length,
    dead,
    ultraLow,
    quantiles: { min: at(0), p10: at(0.1), p25: at(0.25), median: at(0.5), p75: at(0.75), p90: at(0.9), max: at(1) },
  };
}

function formatNumber(value: number): string {
  if (value === -Infinity) return '-inf';
  if (value === Infinity) return 'inf';
  if (Number.isNaN(value)) return 'nan';
  if (Number.isInteger(value)) return String(value); // counts and sizes exactly
  return Number(value.toPrecision(4)).toString();
}

function formatValue(value: unknown): string {
  if (typeof value === 'number') return formatNumber(value);
  return typeof value === 'string' ? value : JSON.stringify(value);
}

export function formatSaeInfo(info: SaeInfo): string {
  const m = info.metadata;
  const row = (label: string, value: string) => `  ${label.padEnd(15)} ${value}`;
  const known = (value: string | number | null) => (value === null ? 'unknown' : String(value));
  const lines = [
    'monosemantic sae info',
    row('path', info.path),
    row('architecture', info.architecture),
    row('d_in', String(info.dIn)),
    row('d_sae', String(info.dSae)),
    row('dtype', known(info.dtype)),
    row('model', known(m.modelName)),
    row('hook', known(m.hookName) + (m.hookHeadIndex == null ? '' : ` (head ${m.hookHeadIndex})`)),
    row('context size', known(m.contextSize)),
    row('dataset', known(m.datasetPath)),
  ];
  if (info.training === null) {
    lines.push(row('training', 'no monosemantic record'));
  } else {
    const entries = Object.entries(info.training);
    lines.push(row('training', entries.length === 0 ? '(empty record)' : '(cfg.json "monosemantic")'));
    for (const [key, value] of entries) lines.push(`    ${key.padEnd(26)} ${formatValue(value)}`);
  }
  const n = info.decoderNorms;
  lines.push(row('decoder norms', `min ${formatNumber(n.min)}, median ${formatNumber(n.median)}, max ${formatNumber(n.max)}`));
  const d = info.density;
  if (d === null) {
    lines.push(row('density', 'unknown (no sparsity.safetensors)'));
  } else {
    const percent = (count: number) => `${((100 * count) / d.features).toFixed(1)}%`;
    const q = d.quantiles;
    lines.push(
      row('dead', `${d.dead} of ${d.features} (${percent(d.dead)}; log10 density <= ${DEAD_LOG10_DENSITY})`),
      row('ultra-low', `${d.ultraLow} of ${d.features} (${percent(d.ultraLow)}; ${DEAD_LOG10_DENSITY} < log10 density < ${ULTRA_LOW_LOG10_DENSITY})`),
      row(
        'log10 density',
        `min ${formatNumber(q.min)}, p10 ${formatNumber(q.p10)}, p25 ${formatNumber(q.p25)}, median ${formatNumber(q.median)}, ` +
          `p75 ${formatNumber(q.p75)}, p90 ${formatNumber(q.p90)}, max ${formatNumber(q.max)}`,
      ),
    );
  }
  return lines.join('\n');
}

/** JSON with non-finite numbers as strings (JSON.stringify would make them null). */
export function saeInfoJson(info: SaeInfo): string {
  return JSON.stringify(info, (_key, value: unknown) => (typeof value === 'number' && !Number.isFinite(value) ? String(value) : value), 2);
}

export function registerSae(program: Command): void {
  const sae = program.command('sae').description('inspect saved sparse autoencoders (SAELens layout)');
  sae
    .command('info')
    .description('show what a saved SAE is: shape, model and hook, training record, decoder norms, feature density')
    .argument('<dir>', 'folder holding cfg.json and sae_weights.safetensors')
    .option('--json', 'print the report as JSON')
    .action(async (dir: string, options: { json?: boolean }) => {
      const info = saeInfo(dir, await loadSaeLens(dir));
      console.log(options.json ? saeInfoJson(info) : formatSaeInfo(info));
    });
}
