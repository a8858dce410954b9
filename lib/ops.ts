/**
 * Small tensor operations on a backend (async; they run on a worker thread like the SAE ops):
 * sums of squares (gradient norms), in-place scaling (input normalisation), per-row squared
 * distances (per-input reconstruction error, row norms) and row gathers (shuffle windows); and for
 * the analyses, a batch of activations as sparse rows and per-column sums (one pass on the device,
 * results on the host).
 */
import { nativeAddon } from './backend.js';
import { checkPrecision, distinct } from './lm/op-checks.js';
import { Tensor, formatShape } from './tensor.js';

function checkF32(t: unknown, name: string): Tensor {
  if (!(t instanceof Tensor)) throw new TypeError(`${name} must be a Tensor`);
  if (t.disposed) throw new TypeError(`${name} has been disposed`);
  if (t.dtype !== 'f32') throw new TypeError(`${name} must have dtype f32 (got ${t.dtype})`);
  return t;
}

/** Σ x² over all elements, accumulated in double. */
export function sumSquares(x: Tensor): Promise<number> {
  return nativeAddon().sumSquares({ x: checkF32(x, 'x').native });
}

/**
 * out[index] ← (accumulate ? out[index] : 0) + scale · Σ x (or Σ x² with square), summed in double
 * and left on the backend (out: an f32 tensor, index default 0): a reduction that waits for nothing.
 */
export function reduceSumInto(x: Tensor, out: Tensor, options: { square?: boolean; scale?: number; accumulate?: boolean; index?: number } = {}): Promise<void> {
  checkF32(x, 'x');
  checkF32(out, 'out');
  const index = options.index ?? 0;
  if (!Number.isSafeInteger(index) || index < 0 || index >= out.size) throw new RangeError(`index must be an integer in [0, ${out.size}) (got ${index})`);
  if (out.backend !== x.backend) throw new TypeError(`out is on ${out.backend} but x is on ${x.backend}`);
  const scale = options.scale ?? 1;
  if (typeof scale !== 'number' || !Number.isFinite(scale)) throw new RangeError(`scale must be a finite number (got ${scale})`);
  return nativeAddon().reduceSumInto({ x: x.native, square: options.square ?? false, scale, out: out.native, index, accumulate: options.accumulate ?? false });
}

/** x ← alpha · x. */
export function scaleInPlace(x: Tensor, alpha: number): Promise<void> {
  checkF32(x, 'x');
  if (typeof alpha !== 'number' || !Number.isFinite(alpha)) throw new RangeError(`alpha must be a finite number (got ${alpha})`);
  return nativeAddon().scaleInPlace({ x: x.native, alpha });
}

/**
 * out[r] = ‖a[r] − b[r]‖² for the rows of a [rows, d] (‖a[r]‖² when b is null), accumulated in
 * double; into `out` [rows] when given.
 */
export async function rowSqDist(a: Tensor, b: Tensor | null, out?: Tensor): Promise<Tensor> {
  checkF32(a, 'a');
  if (a.shape.length !== 2 || a.shape[0]! < 1 || a.shape[1]! < 1) throw new RangeError(`a must have shape [rows >= 1, d >= 1] (got ${formatShape(a.shape)})`);
  const [rows, d] = a.shape as [number, number];
  if (b !== null) {
    checkF32(b, 'b');
    if (b.shape.length !== 2 || b.shape[0] !== rows || b.shape[1] !== d) {
      throw new RangeError(`b must have the shape of a, ${formatShape(a.shape)} (got ${formatShape(b.shape)})`);
    }
    if (b.backend !== a.backend) throw new TypeError(`b is on ${b.backend} but a is on ${a.backend}`);
  }
  if (out !== undefined) {
    checkF32(out, 'out');
    if (out.size !== rows) throw new RangeError(`out must hold ${rows} elements (got ${formatShape(out.shape)})`);
    if (out.backend !== a.backend) throw new TypeError(`out is on ${out.backend} but a is on ${a.backend}`);
    distinct(out, 'out', a, 'a');
    if (b) distinct(out, 'out', b, 'b');
  }
  const target = out ?? Tensor.empty([rows], { backend: a.backend });
  try {
    await nativeAddon().rowSqDist({ rows, d, a: a.native, ...(b ? { b: b.native } : {}), out: target.native });
    return target;
  } catch (error) {
    if (out === undefined) target.dispose();
    throw error;
  }
}

/**
 * For ops that take token ids, targets or row indices: `indicesChecked: true` says the caller has
 * checked every index on the host (e.g. made them itself), so the backend may skip its own check,
 * which on CUDA waits for the device. An index out of range is then undefined behaviour.
 */
export interface IndexOptions {
  indicesChecked?: boolean;
}

/** The indicesChecked field of an ops' options, validated (false when absent). */
export function indicesCheckedOption(options: IndexOptions | undefined): boolean {
  const v = options?.indicesChecked;
  if (v !== undefined && typeof v !== 'boolean') throw new TypeError(`indicesChecked must be a boolean (got ${typeof v})`);
  return v === true;
}

/**
 * dst[dstRow + i] = src[idx[offset + i]] for i < count, the rows of src [N, d] and dst [M, d]; idx
 * is i32, all of it by default (`options` picks idx[offset .. offset + count)); every index used
 * must be in [0, N), checked on the device before anything is written unless
 * `options.indicesChecked` (IndexOptions).
 */
export function gatherRows(src: Tensor, idx: Tensor, dst: Tensor, dstRow = 0, options?: { offset?: number; count?: number } & IndexOptions): Promise<void> {
  checkF32(src, 'src');
  checkF32(dst, 'dst');
  if (!(idx instanceof Tensor) || idx.disposed || idx.dtype !== 'i32') throw new TypeError('idx must be a live i32 Tensor');
  distinct(dst, 'dst', src, 'src');
  if (src.shape.length !== 2 || dst.shape.length !== 2 || src.shape[1] !== dst.shape[1] || src.shape[1]! < 1) {
    throw new RangeError(`src and dst must be [rows, d >= 1] with the same d (got ${formatShape(src.shape)} and ${formatShape(dst.shape)})`);
  }
  if (src.backend !== dst.backend || idx.backend !== src.backend) throw new TypeError('src, idx and dst must be on one backend');
  const [srcRows, d] = src.shape as [number, number];
  const idxOffset = options?.offset ?? 0;
  const count = options?.count ?? idx.size - idxOffset;
  const indicesChecked = indicesCheckedOption(options);
  if (!Number.isSafeInteger(idxOffset) || !Number.isSafeInteger(count) || idxOffset < 0 || count < 0 || idxOffset + count > idx.size) {
    throw new RangeError(`idx range offset ${idxOffset}, count ${count} is outside idx's ${idx.size} elements`);
  }
  if (!Number.isSafeInteger(dstRow) || dstRow < 0 || dstRow + count > dst.shape[0]!) {
    throw new RangeError(`rows ${dstRow}..${dstRow + count - 1} do not fit in dst ${formatShape(dst.shape)}`);
  }
  return nativeAddon().gatherRows({ count, d, src: src.native, srcRows, idx: idx.native, idxOffset, dst: dst.native, dstRow, indicesChecked });
}

/** Entries of a [rows, n] matrix in CSR form: row r's are k in [rowPtr[r], rowPtr[r + 1]), columns increasing. */
export interface SparseRows {
  rows: number;
  n: number;
  rowPtr: Int32Array;
  cols: Int32Array;
  values: Float32Array;
}

function checkMatrix(x: unknown, name: string): [number, number] {
  const t = checkF32(x, name);
  if (t.shape.length !== 2 || t.shape[1]! < 1) throw new RangeError(`${name} must have shape [rows, n >= 1] (got ${formatShape(t.shape)})`);
  return t.shape as [number, number];
}

/**
 * The entries of x [rows, n] greater than `threshold` (default 0: where a feature fires), row by
 * row, copied to the host as CSR. `capacity` guesses the entry count (the op runs once more when
 * it is short; a good guess is the last batch's count).
 */
export async function sparseRows(x: Tensor, options: { threshold?: number; capacity?: number } = {}): Promise<SparseRows> {
  const [rows, n] = checkMatrix(x, 'x');
  const threshold = options.threshold ?? 0;
  if (typeof threshold !== 'number' || !Number.isFinite(threshold)) throw new RangeError(`threshold must be a finite number (got ${threshold})`);
  const capacity = Math.min(options.capacity ?? rows * Math.min(n, 64), 2 ** 30);
  if (!Number.isSafeInteger(capacity) || capacity < 0) throw new RangeError(`capacity must be a non-negative integer (got ${options.capacity})`);
  const csr = await nativeAddon().sparseRows({ rows, n, x: x.native, threshold, capacity });
  return { rows, n, ...csr };
}

/** Per column of x [rows, n], accumulated in double: Σ x, Σ x² and the count of nonzero entries. */
export async function columnStats(x: Tensor): Promise<{ sum: Float64Array; sumsq: Float64Array; nonzero: Float64Array }> {
  const [rows, n] = checkMatrix(x, 'x');
  return nativeAddon().columnStats({ rows, n, x: x.native });
}

/**
 * out [nA, nB] += aᵀ b for a [rows, nA] and b [rows, nB] (fp32 GEMM on the backend, transposing a
 * in the product rather than in memory): the cross products of two sets of activations.
 */
export async function addCrossProducts(a: Tensor, b: Tensor, out: Tensor): Promise<void> {
  const [rows, nA] = checkMatrix(a, 'a');
  const [rowsB, nB] = checkMatrix(b, 'b');
  checkF32(out, 'out');
  if (rowsB !== rows) throw new RangeError(`a ${formatShape(a.shape)} and b ${formatShape(b.shape)} must have the same rows`);
  if (out.shape.length !== 2 || out.shape[0] !== nA || out.shape[1] !== nB) throw new RangeError(`out must have shape [${nA}, ${nB}] (got ${formatShape(out.shape)})`);
  if (a.backend !== b.backend || out.backend !== a.backend) throw new TypeError('a, b and out must be on one backend');
  distinct(out, 'out', a, 'a');
  distinct(out, 'out', b, 'b');
  return nativeAddon().linearBackward({ rows, nIn: nA, nOut: nB, transW: false, precision: checkPrecision('f32'), dout: b.native, x: a.native, dweight: out.native, accumulate: false }); // accumulate is dx's (not computed here): the weight gradient, out, is always added to
}
