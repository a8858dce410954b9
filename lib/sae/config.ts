/**
 * Options of a sparse autoencoder and their validation. Every default is listed in DEFAULTS.
 */
import type { BackendName } from '../backend.js';

/** 'l1': the 2023 paper's λ Σ f_i. 'l1_decnorm': April 2024's λ Σ f_i ‖W_dec,i‖. */
export type Penalty = 'l1' | 'l1_decnorm';
/** Matrix-product precision: 'bf16' rounds product operands to bf16 and accumulates in fp32. */
export type Precision = 'f32' | 'bf16';
/** 'transpose': W_enc = W_decᵀ. 'kaiming': W_enc drawn independently, Kaiming-uniform. */
export type EncoderInit = 'transpose' | 'kaiming';

export interface Hyperparameters {
  /** λ, the sparsity coefficient. */
  l1Coeff: number;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
}

export interface SaeOptions extends Partial<Hyperparameters> {
  /** Input width d (d_in). */
  dIn: number;
  /** Dictionary size n (d_sae). */
  dSae: number;
  /** Seed of the initialisation. */
  seed?: number;
  /** Where the parameters live; the active backend by default. */
  backend?: BackendName;
  penalty?: Penalty;
  /** Keep decoder rows unit-norm (gradient projection + renormalisation). Default: penalty === 'l1'. */
  constrainDecoder?: boolean;
  /** Default: 'bf16' on CUDA, 'f32' on the CPU. */
  precision?: Precision;
  init?: EncoderInit;
  /** Initial norm of decoder rows when the decoder is unconstrained. */
  decoderInitNorm?: number;
}

export const DEFAULTS = {
  seed: 0,
  penalty: 'l1' as Penalty,
  init: 'transpose' as EncoderInit,
  decoderInitNorm: 0.1,
  /** λ = 5 suits inputs scaled so that E‖x‖ = √d (the trainer's normalisation). */
  l1Coeff: 5,
  /** The paper's Adam settings. */
  lr: 1e-4,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
} as const;

function finite(name: string, value: unknown): number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number (got ${typeof value})`);
  if (!Number.isFinite(value)) throw new RangeError(`${name} must be finite (got ${value})`);
  return value;
}

function oneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): T {
  if (!allowed.includes(value as T)) {
    throw new TypeError(`${name} must be one of ${allowed.map((a) => `'${a}'`).join(', ')} (got ${JSON.stringify(value)})`);
  }
  return value as T;
}

export function positiveInteger(name: string, value: unknown): number {
  const v = finite(name, value);
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer (got ${v})`);
  return v;
}

/**
 * Validates hyperparameters (TypeError for a non-number, RangeError for a bad value) as the
 * kernels use them: in fp32. A β that rounds to 1 there would freeze a moment, an ε that rounds to
 * 0 divides 0 by 0, and a value beyond fp32's range is infinite.
 */
export function checkHyperparameters(h: Hyperparameters): Hyperparameters {
  if (typeof h !== 'object' || h === null) throw new TypeError('hyperparameters must be an object');
  const known = ['l1Coeff', 'lr', 'beta1', 'beta2', 'eps'];
  const unknown = Object.keys(h).filter((key) => !known.includes(key));
  if (unknown.length > 0) throw new RangeError(`unknown hyperparameter ${unknown.map((k) => `'${k}'`).join(', ')} (known: ${known.join(', ')})`);
  const f32 = (name: string, value: number) => {
    if (!Number.isFinite(Math.fround(value))) throw new RangeError(`${name} ${value} is beyond fp32's range, in which the kernels use it`);
    return value;
  };
  const l1Coeff = f32('l1Coeff', finite('l1Coeff', h.l1Coeff));
  if (l1Coeff < 0) throw new RangeError(`l1Coeff must be >= 0 (got ${l1Coeff})`);
  const lr = f32('lr', finite('lr', h.lr));
  if (lr <= 0) throw new RangeError(`lr must be > 0 (got ${lr})`);
  const beta1 = finite('beta1', h.beta1);
  if (beta1 < 0 || Math.fround(beta1) >= 1) throw new RangeError(`beta1 must be in [0, 1), also once rounded to fp32 (got ${beta1})`);
  const beta2 = finite('beta2', h.beta2);
  if (beta2 < 0 || Math.fround(beta2) >= 1) throw new RangeError(`beta2 must be in [0, 1), also once rounded to fp32 (got ${beta2})`);
  const eps = f32('eps', finite('eps', h.eps));
  if (!(Math.fround(eps) > 0)) throw new RangeError(`eps must be > 0, also once rounded to fp32 (got ${eps})`);
  return { l1Coeff, lr, beta1, beta2, eps };
}

export interface ResolvedOptions extends Hyperparameters {
  dIn: number;
  dSae: number;
  seed: number;
  penalty: Penalty;
  constrainDecoder: boolean;
  precision: Precision;
  init: EncoderInit;
  decoderInitNorm: number;
}

export function resolveOptions(options: SaeOptions, backend: BackendName): ResolvedOptions {
  if (typeof options !== 'object' || options === null) throw new TypeError('SAE options must be an object');
  const dIn = positiveInteger('dIn', options.dIn);
  const dSae = positiveInteger('dSae', options.dSae);
  // The kernels take dimensions up to 2^30: refused here, before any of the SAE's tensors is allocated.
  for (const [key, value] of [['dIn', dIn], ['dSae', dSae]] as const) if (value > 2 ** 30) throw new RangeError(`${key} must be at most 2^30 (got ${value})`);
  const seed = finite('seed', options.seed ?? DEFAULTS.seed);
  if (!Number.isSafeInteger(seed) || seed < -(2 ** 31) || seed >= 2 ** 31) throw new RangeError(`seed must be a 32-bit integer (got ${seed})`);
  const penalty = oneOf('penalty', options.penalty ?? DEFAULTS.penalty, ['l1', 'l1_decnorm']);
  const constrainDecoder = options.constrainDecoder ?? penalty === 'l1';
  if (typeof constrainDecoder !== 'boolean') throw new TypeError('constrainDecoder must be a boolean');
  const precision = oneOf('precision', options.precision ?? (backend === 'cuda' ? 'bf16' : 'f32'), ['f32', 'bf16']);
  const init = oneOf('init', options.init ?? DEFAULTS.init, ['transpose', 'kaiming']);
  const decoderInitNorm = finite('decoderInitNorm', options.decoderInitNorm ?? DEFAULTS.decoderInitNorm);
  if (decoderInitNorm <= 0) throw new RangeError(`decoderInitNorm must be > 0 (got ${decoderInitNorm})`);
  const hyper = checkHyperparameters({
    l1Coeff: options.l1Coeff ?? DEFAULTS.l1Coeff,
    lr: options.lr ?? DEFAULTS.lr,
    beta1: options.beta1 ?? DEFAULTS.beta1,
    beta2: options.beta2 ?? DEFAULTS.beta2,
    eps: options.eps ?? DEFAULTS.eps,
  });
  return { dIn, dSae, seed, penalty, constrainDecoder, precision, init, decoderInitNorm, ...hyper };
}
