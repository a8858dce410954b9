/**
 * Interventions for Gpt2Model.forward: functions that change a hook's activation [rows, width]
 * in place. Zero- and mean-ablation, replacement, adding a direction (steering), and splicing in
 * an SAE's reconstruction — with or without the error term, optionally with features clamped.
 */
import { add, linear } from './ops.js';
import type { HookContext, Intervention } from './model.js';
import type { SparseAutoencoder } from '../sae/sae.js';
import { Tensor, formatShape } from '../tensor.js';

function widthOf(x: Tensor): [number, number] {
  return [x.shape[0]!, x.shape[1]!];
}

/** A host array [rows, width] holding `row` in every row. */
function tiled(row: Float32Array, rows: number): Float32Array {
  const out = new Float32Array(rows * row.length);
  for (let r = 0; r < rows; r++) out.set(row, r * row.length); // out[r, :] = row
  return out;
}

/** Throws unless `values` is a Float32Array of finite numbers. */
function checkFinite(name: string, values: Float32Array): void {
  if (!(values instanceof Float32Array)) throw new TypeError(`${name} must be a Float32Array`);
  const bad = values.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new RangeError(`${name}[${bad}] is ${values[bad]}`);
}

/** Sets the activation to 0. */
export function zeroAblate(): Intervention {
  return (x) => x.fill(0);
}

/** Replaces every row by `mean` [width] (e.g. the activation's mean over a reference set). */
export function meanAblate(mean: Float32Array): Intervention {
  checkFinite('mean', mean);
  return (x, ctx) => {
    const [rows, width] = widthOf(x);
    if (mean.length !== width) throw new RangeError(`mean has ${mean.length} values but ${ctx.hook} is ${width} wide`);
    x.upload(tiled(mean, rows));
  };
}

/** Replaces the activation by `value` (same shape), or by what `fn` computes from it. */
export function replaceWith(value: Tensor | ((x: Tensor, ctx: HookContext) => Promise<Tensor> | Tensor)): Intervention {
  if (typeof value !== 'function' && !(value instanceof Tensor)) throw new TypeError('replaceWith takes a Tensor or a function returning one');
  return async (x, ctx) => {
    const next = typeof value === 'function' ? await value(x, ctx) : value;
    if (!(next instanceof Tensor)) throw new TypeError(`the replacement function for ${ctx.hook} returned ${next === null ? 'null' : typeof next}, not a Tensor`);
    try {
      const same = next.shape.length === x.shape.length && next.shape.every((d, i) => d === x.shape[i]);
      if (!same) throw new RangeError(`the replacement for ${ctx.hook} has shape ${formatShape(next.shape)}; the activation is ${formatShape(x.shape)}`);
      if (next.dtype !== x.dtype || next.backend !== x.backend) {
        throw new TypeError(`the replacement for ${ctx.hook} is ${next.dtype} on ${next.backend}; the activation is ${x.dtype} on ${x.backend}`);
      }
      if (next !== x) x.native.copyFrom(next.native);
    } finally {
      if (typeof value === 'function' && next !== x) next.dispose();
    }
  };
}

/** Adds coefficient × direction [width] to every row (activation steering). */
export function addDirection(direction: Float32Array, coefficient: number): Intervention {
  checkFinite('direction', direction);
  if (typeof coefficient !== 'number' || !Number.isFinite(coefficient)) throw new RangeError(`the coefficient must be a finite number (got ${coefficient})`);
  return async (x, ctx) => {
    const [rows, width] = widthOf(x);
    if (direction.length !== width) throw new RangeError(`the direction has ${direction.length} values but ${ctx.hook} is ${width} wide`);
    using delta = Tensor.from(tiled(direction.map((v) => v * coefficient), rows), [rows, width], { backend: x.backend });
    await add(x, delta, x);
  };
}

/**
 * `inner`, except at absolute position 0 (the BOS token, where SAEs are neither trained nor
 * evaluated: its activation is unlike any other position's): those rows keep their activation.
 * With a KV cache, only the forward that starts at position 0 has such rows.
 */
export function exceptFirstPosition(inner: Intervention): Intervention {
  return async (x, ctx) => {
    const [, width] = widthOf(x);
    if (ctx.positionOffset !== 0) return inner(x, ctx);
    const saved = Array.from({ length: ctx.batch }, (_, b) => x.readRange(b * ctx.T * width, width)); // row b·T: position 0 of sequence b
    await inner(x, ctx);
    saved.forEach((row, b) => x.writeRange(row, b * ctx.T * width));
  };
}

export interface SaeSpliceOptions {
  /** Keep the SAE's error x − x̂, so only feature edits change the activation (default false). */
  keepError?: boolean;
  /** Features pinned to a value in every row (the paper's steering by clamping). */
  clamp?: Readonly<Record<number, number>>;
}

/**
 * Replaces the activation x by the SAE's reconstruction x̂ = decode(encode(x)) (keepError:
 * x + x̂' − x̂, where x̂' decodes the edited features). With `clamp`, feature i is set to its value
 * before decoding; since decoding is linear, that adds (value − f_i) W_dec[i] to each row.
 * The activation must be f32 [rows, dIn] on the SAE's backend.
 */
export function saeSplice(sae: SparseAutoencoder, options: SaeSpliceOptions = {}): Intervention {
  const clamp = Object.entries(options.clamp ?? {}).map(([k, v]) => [Number(k), v] as const);
  for (const [feature, value] of clamp) {
    if (!Number.isInteger(feature) || feature < 0 || feature >= sae.dSae) throw new RangeError(`clamped feature ${feature} is outside [0, ${sae.dSae})`);
    if (!Number.isFinite(value)) throw new RangeError(`feature ${feature} is clamped to ${value}`);
  }
  return async (x, ctx) => {
    const [rows, width] = widthOf(x);
    if (width !== sae.dIn) throw new RangeError(`the SAE reads ${sae.dIn}-wide activations but ${ctx.hook} is ${width} wide`);
    using f = await sae.encode(x);
    using xhat = await sae.decode(f);
    if (!options.keepError) x.native.copyFrom(xhat.native);
    if (clamp.length === 0) return;
    // delta[r] = Σ_i (value_i − f[r, i]) W_dec[i]: a [rows, k] × [k, width] product done on the host side for the k clamped features.
    const fHost = f.toArray() as Float32Array;
    const W_dec = sae.parameters.W_dec;
    const coeff = new Float32Array(rows * clamp.length);
    const directions = new Float32Array(clamp.length * width);
    clamp.forEach(([feature, value], k) => {
      for (let r = 0; r < rows; r++) coeff[r * clamp.length + k] = value - fHost[r * sae.dSae + feature]!; // f[r, feature]
      directions.set(W_dec.readRange(feature * width, width) as Float32Array, k * width); // W_dec[feature, :]
    });
    using c = Tensor.from(coeff, [rows, clamp.length], { backend: x.backend });
    using dirs = Tensor.from(directions, [clamp.length, width], { backend: x.backend });
    using delta = Tensor.empty([rows, width], { backend: x.backend });
    await linear(c, dirs, null, delta, 'f32'); // delta [rows, width] = c [rows, k] · dirs [k, width]
    await add(x, delta, x);
  };
}
