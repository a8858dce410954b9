/**
 * Argument checks shared by the forward and backward transformer ops (lib/lm/ops.ts,
 * lib/lm/grad-ops.ts): TypeError / RangeError naming the argument and the shapes, before anything
 * reaches the native layer.
 */
import { ACTIVATION_CODE } from '../native/binding.js';
import { type DType, Tensor, formatShape } from '../tensor.js';
import type { Activation, MatmulPrecision } from './ops.js';

const PRECISION_CODE: Record<MatmulPrecision, number> = { f32: 0, bf16: 1 };
/** Largest dimension the native layer takes (native/core/backend_worker.h). */
export const MAX_DIM = 2 ** 30;

export function checkTensor(t: unknown, name: string, dtype: DType = 'f32'): Tensor {
  if (!(t instanceof Tensor)) throw new TypeError(`${name} must be a Tensor`);
  if (t.disposed) throw new TypeError(`${name} has been disposed`);
  if (t.dtype !== dtype) throw new TypeError(`${name} must have dtype ${dtype} (got ${t.dtype})`);
  return t;
}

/** The dtype an operand that may be f32 or bf16 is checked against: bf16 for a bf16 tensor, else f32. */
export function f32OrBf16(t: unknown): 'f32' | 'bf16' {
  return t instanceof Tensor && t.dtype === 'bf16' ? 'bf16' : 'f32';
}

export function checkInt(value: unknown, name: string, min: number): number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number (got ${typeof value})`);
  if (!Number.isInteger(value) || value < min || value > MAX_DIM) {
    throw new RangeError(`${name} must be an integer in [${min}, 2^30] (got ${value})`);
  }
  return value;
}

export function checkBool(value: unknown, name: string): boolean {
  if (typeof value !== 'boolean') throw new TypeError(`${name} must be a boolean (got ${typeof value})`);
  return value;
}

/** [rows, cols] of a tensor read as rows of its last dim; both >= 1. */
export function rowsOf(t: Tensor, name: string): [number, number] {
  const cols = t.shape.length > 0 ? t.shape[t.shape.length - 1]! : 0;
  if (cols < 1 || t.size < 1) throw new RangeError(`${name} must be a non-empty tensor with a last dim (got ${formatShape(t.shape)})`);
  const rows = t.size / cols;
  if (rows > MAX_DIM || cols > MAX_DIM) throw new RangeError(`${name} ${formatShape(t.shape)} is too large (at most 2^30 rows and columns)`);
  return [rows, cols];
}

/** t must read as [rows, cols]: last dim cols, size rows·cols. `why` explains where the shape comes from. */
export function expectRows(t: Tensor, name: string, rows: number, cols: number, why: string): void {
  const last = t.shape.length > 0 ? t.shape[t.shape.length - 1] : undefined;
  if (last !== cols || t.size !== rows * cols) {
    throw new RangeError(`${name} must have shape [${rows}, ${cols}] (or [..., ${cols}] holding ${rows} rows) ${why} (got ${formatShape(t.shape)})`);
  }
}

export function expectShape(t: Tensor, name: string, shape: readonly number[], why: string): void {
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new RangeError(`${name} must have shape ${formatShape(shape)} ${why} (got ${formatShape(t.shape)})`);
  }
}

export function expectSize(t: Tensor, name: string, size: number, why: string): void {
  if (t.size !== size) throw new RangeError(`${name} must hold ${size} elements ${why} (got ${formatShape(t.shape)})`);
}

/** Every tensor on the backend of the first. */
export function sameBackend(tensors: Record<string, Tensor>): void {
  const entries = Object.entries(tensors);
  const [firstName, first] = entries[0]!;
  for (const [name, t] of entries.slice(1)) {
    if (t.backend !== first.backend) throw new TypeError(`${name} is on ${t.backend} but ${firstName} is on ${first.backend}`);
  }
}

/** Whether a and b share memory: one tensor, or views of one allocation whose elements meet. */
export function sharesMemory(a: Tensor, b: Tensor): boolean {
  return a === b || (!a.disposed && !b.disposed && a.native.overlaps(b.native));
}

/** a and b share no memory (neither the same tensor nor overlapping views). */
export function distinct(a: Tensor, aName: string, b: Tensor, bName: string): void {
  if (a === b) throw new RangeError(`${aName} must not be the same tensor as ${bName}`);
  if (sharesMemory(a, b)) throw new RangeError(`${aName} must not overlap ${bName} (views of one allocation)`);
}

/** out is x itself (an op that works in place) or shares no memory with it. */
export function sameOrDistinct(out: Tensor, outName: string, x: Tensor, xName: string): void {
  if (out !== x && sharesMemory(out, x)) throw new RangeError(`${outName} must be ${xName} itself or not overlap it (views of one allocation)`);
}

/** No output shares memory with another output or with an input. */
export function noAliases(outputs: Record<string, Tensor>, inputs: Record<string, Tensor>): void {
  const outs = Object.entries(outputs);
  for (let i = 0; i < outs.length; i++) {
    const [name, t] = outs[i]!;
    for (const [other, u] of [...outs.slice(i + 1), ...Object.entries(inputs)]) distinct(t, name, u, other);
  }
}

export function checkPrecision(precision: unknown): number {
  if (precision !== 'f32' && precision !== 'bf16') throw new TypeError(`precision must be 'f32' or 'bf16' (got ${JSON.stringify(precision)})`);
  return PRECISION_CODE[precision];
}

export function checkActivation(kind: unknown, name = 'kind'): number {
  if (typeof kind !== 'string' || !Object.hasOwn(ACTIVATION_CODE, kind)) {
    throw new TypeError(`${name} must be one of ${Object.keys(ACTIVATION_CODE).join(', ')} (got ${JSON.stringify(kind)})`);
  }
  return ACTIVATION_CODE[kind as Activation];
}
