/**
 * Device tensors: a shape, a dtype and a handle to memory on a backend (host memory for `cpu`,
 * GPU memory for `cuda`).
 *
 * Memory is freed deterministically by `dispose()` (or `using t = ...` via `Symbol.dispose`); the
 * garbage collector frees only what was never disposed. An operation still running on a tensor
 * keeps its memory alive until it completes, so disposing early is safe.
 *
 * Blocking: `upload`, `toArray`, `fill`, `copyFrom` and `cast` are synchronous copies (they also
 * wait for an operation already running on the same backend). SAE operations are asynchronous.
 */
import { type BackendName, nativeAddon, resolveBackend } from './backend.js';
import { bf16ToFloat32, float32ToBf16 } from './bf16.js';
import { DTYPE_CODE, type NativeTensor } from './native/binding.js';

export type DType = 'f32' | 'bf16' | 'i32';

/** The typed array each dtype travels as: bf16 as raw 16-bit patterns. */
export type ArrayFor<D extends DType> = D extends 'f32' ? Float32Array : D extends 'bf16' ? Uint16Array : Int32Array;

export interface TensorOptions {
  dtype?: DType;
  backend?: BackendName;
}

const DTYPES: readonly DType[] = ['f32', 'bf16', 'i32'];

function checkShape(shape: readonly number[]): number {
  if (!Array.isArray(shape)) throw new TypeError(`shape must be an array of integers (got ${String(shape)})`);
  let size = 1;
  for (const dim of shape) {
    if (!Number.isInteger(dim) || dim < 0) throw new RangeError(`shape [${shape.join(', ')}] must hold non-negative integers`);
    if (!Number.isSafeInteger(dim)) throw new RangeError(`shape [${shape.join(', ')}] is too large`);
    size *= dim;
  }
  if (!Number.isSafeInteger(size)) throw new RangeError(`shape [${shape.join(', ')}] is too large`);
  return size;
}

function checkDtype(dtype: unknown): DType {
  if (!DTYPES.includes(dtype as DType)) {
    throw new TypeError(`dtype must be one of ${DTYPES.join(', ')} (got ${JSON.stringify(dtype)})`);
  }
  return dtype as DType;
}

export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

export class Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly backend: BackendName;
  /** Number of elements. */
  readonly size: number;
  #native: NativeTensor | null;

  private constructor(shape: readonly number[], dtype: DType, backend: BackendName, native: NativeTensor) {
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.backend = backend;
    this.size = this.shape.reduce((a, b) => a * b, 1);
    this.#native = native;
  }

  /** A tensor with unspecified contents. */
  static empty(shape: readonly number[], options: TensorOptions = {}): Tensor {
    const size = checkShape(shape);
    const dtype = checkDtype(options.dtype ?? 'f32');
    const backend = resolveBackend(options.backend);
    const native = new (nativeAddon().NativeTensor)(backend, DTYPE_CODE[dtype], size);
    return new Tensor(shape, dtype, backend, native);
  }

  static full(shape: readonly number[], value: number, options: TensorOptions = {}): Tensor {
    const t = Tensor.empty(shape, options);
    t.fill(value);
    return t;
  }

  static zeros(shape: readonly number[], options: TensorOptions = {}): Tensor {
    return Tensor.full(shape, 0, options);
  }

  /**
   * A tensor holding `data`. For bf16, pass a Float32Array/number[] (rounded to nearest even) or
   * a Uint16Array of raw bf16 bits.
   */
  static from(
    data: Float32Array | Int32Array | Uint16Array | readonly number[],
    shape: readonly number[],
    options: TensorOptions = {},
  ): Tensor {
    const t = Tensor.empty(shape, options);
    try {
      t.upload(data);
    } catch (error) {
      t.dispose();
      throw error;
    }
    return t;
  }

  get disposed(): boolean {
    return this.#native === null;
  }

  /** The native handle (for the library's own operations). Throws if disposed. */
  get native(): NativeTensor {
    if (this.#native === null) throw new TypeError(`Tensor ${formatShape(this.shape)} ${this.dtype} has been disposed`);
    return this.#native;
  }

  /** Replaces the contents. `data` must hold exactly `size` elements. */
  upload(data: Float32Array | Int32Array | Uint16Array | readonly number[]): void {
    const transfer = this.#asTransfer('upload', data);
    if (transfer.length !== this.size) {
      throw new RangeError(`data holds ${transfer.length} elements but the tensor ${formatShape(this.shape)} needs ${this.size}`);
    }
    this.native.upload(transfer);
  }

  /**
   * `data` in the typed array this dtype is transferred as: as it is when it already is one, else
   * converted. Into i32, every value must be an integer of its range (no silent wrapping).
   */
  #asTransfer(method: string, data: Float32Array | Int32Array | Uint16Array | readonly number[]): Float32Array | Uint16Array | Int32Array {
    if (!Array.isArray(data) && !ArrayBuffer.isView(data)) {
      throw new TypeError(`Tensor.${method}: data must be a typed array or an array of numbers (got ${data === null ? 'null' : typeof data})`);
    }
    const values = data as ArrayLike<number>;
    if (Array.isArray(data)) {
      const bad = data.findIndex((v) => typeof v !== 'number');
      if (bad >= 0) throw new TypeError(`Tensor.${method}: data[${bad}] is a ${typeof data[bad]}, not a number`);
    }
    switch (this.dtype) {
      case 'f32':
        return data instanceof Float32Array ? data : Float32Array.from(values);
      case 'i32': {
        if (data instanceof Int32Array) return data;
        for (let i = 0; i < values.length; i++) {
          const v = values[i]!;
          if (!Number.isInteger(v) || v < -(2 ** 31) || v >= 2 ** 31) throw new RangeError(`Tensor.${method}: data[${i}] = ${v} is not an i32 value (an integer in [-2^31, 2^31))`);
        }
        return Int32Array.from(values);
      }
      case 'bf16':
        return data instanceof Uint16Array ? data : float32ToBf16(values);
    }
  }

  /** Copies the contents to a new typed array (bf16 as raw Uint16 bits; see toFloat32). */
  toArray(): Float32Array | Uint16Array | Int32Array {
    const out =
      this.dtype === 'f32' ? new Float32Array(this.size) : this.dtype === 'bf16' ? new Uint16Array(this.size) : new Int32Array(this.size);
    this.native.download(out);
    return out;
  }

  /** A copy of `count` elements starting at element `offset` (row-major), as toArray() types them. */
  readRange(offset: number, count: number): Float32Array | Uint16Array | Int32Array {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(count) || offset < 0 || count < 0 || offset + count > this.size) {
      throw new RangeError(`readRange(${offset}, ${count}) is outside the tensor's ${this.size} elements`);
    }
    const out = this.dtype === 'f32' ? new Float32Array(count) : this.dtype === 'bf16' ? new Uint16Array(count) : new Int32Array(count);
    this.native.download(out, offset);
    return out;
  }

  /** Overwrites elements offset .. offset + data.length − 1 (same typed array as toArray()). */
  writeRange(data: Float32Array | Uint16Array | Int32Array | readonly number[], offset: number): void {
    const transfer = this.#asTransfer('writeRange', data);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + transfer.length > this.size) {
      throw new RangeError(`writeRange of ${transfer.length} elements at ${offset} is outside the tensor's ${this.size} elements`);
    }
    this.native.upload(transfer, offset);
  }

  /** The contents as float32 whatever the dtype. */
  toFloat32(): Float32Array {
    const data = this.toArray();
    if (data instanceof Float32Array) return data;
    if (data instanceof Uint16Array) return bf16ToFloat32(data);
    return Float32Array.from(data);
  }

  fill(value: number): void {
    if (typeof value !== 'number') throw new TypeError(`fill value must be a number (got ${typeof value})`);
    if (this.dtype === 'i32' && (!Number.isInteger(value) || value < -(2 ** 31) || value >= 2 ** 31)) {
      throw new RangeError(`fill value ${value} is not an i32 value (an integer in [-2^31, 2^31))`);
    }
    this.native.fill(value);
  }

  /** Copies another tensor of the same shape and backend into this one, converting dtype. */
  copyFrom(src: Tensor): void {
    if (!(src instanceof Tensor)) throw new TypeError('copyFrom: source must be a Tensor');
    if (src.backend !== this.backend) {
      throw new TypeError(`copyFrom: source is on ${src.backend}, destination on ${this.backend}`);
    }
    if (src.size !== this.size || src.shape.length !== this.shape.length || src.shape.some((d, i) => d !== this.shape[i])) {
      throw new RangeError(`copyFrom: source shape ${formatShape(src.shape)} differs from ${formatShape(this.shape)}`);
    }
    this.native.copyFrom(src.native);
  }

  /** A new tensor with the same contents in another dtype (f32 <-> bf16 rounds to nearest even). */
  cast(dtype: DType): Tensor {
    const out = Tensor.empty(this.shape, { dtype: checkDtype(dtype), backend: this.backend });
    out.copyFrom(this);
    return out;
  }

  /** A tensor with the same contents on another backend. */
  to(backend: BackendName): Tensor {
    return Tensor.from(this.toArray(), this.shape, { dtype: this.dtype, backend });
  }

  /**
   * A tensor of `shape` over elements offset .. offset + size − 1 of this one (row-major, same
   * dtype and backend), sharing its memory: writes through either show in both, and the memory is
   * freed once this tensor and every view of it are disposed. The view must start a multiple of
   * VIEW_ALIGN_BYTES into the allocation. Operations refuse an output that shares memory with
   * another of their operands, by identity or through overlapping views (but where an operation
   * says it works in place, on that very tensor).
   */
  view(offset: number, shape: readonly number[]): Tensor {
    const size = checkShape(shape);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + size > this.size) {
      throw new RangeError(`a view of ${size} elements at ${offset} is outside the tensor's ${this.size} elements`);
    }
    const native = new (nativeAddon().NativeTensor)(this.native, offset, size);
    return new Tensor(shape, this.dtype, this.backend, native);
  }

  /** Frees the memory now (idempotent). */
  dispose(): void {
    if (this.#native !== null) {
      this.#native.dispose();
      this.#native = null;
    }
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  toString(): string {
    return `Tensor(${formatShape(this.shape)}, ${this.dtype}, ${this.backend}${this.disposed ? ', disposed' : ''})`;
  }
}

/** Where a view may start in its allocation: a multiple of this many bytes (native/core/tensor.h). */
export const VIEW_ALIGN_BYTES = 256;

const DTYPE_BYTES: Record<DType, number> = { f32: 4, bf16: 2, i32: 4 };

/**
 * Tensors of the given shapes in one allocation, one after another, each starting on a
 * VIEW_ALIGN_BYTES boundary: `parts` (views, in order) and `whole`, the 1-D tensor over all of
 * them and the gaps between them, zero-filled. An operation over `whole` (a fill, a reduction, an
 * optimizer update) covers every part in one call. Dispose both.
 */
export function packedTensors(shapes: readonly (readonly number[])[], options: TensorOptions = {}): { whole: Tensor; parts: Tensor[] } {
  const dtype = checkDtype(options.dtype ?? 'f32');
  const align = VIEW_ALIGN_BYTES / DTYPE_BYTES[dtype];
  const offsets: number[] = [];
  let total = 0;
  for (const shape of shapes) {
    offsets.push(total);
    total += Math.ceil(checkShape(shape) / align) * align;
  }
  const whole = Tensor.zeros([total], { ...options, dtype });
  const parts: Tensor[] = [];
  try {
    shapes.forEach((shape, i) => parts.push(whole.view(offsets[i]!, shape)));
  } catch (error) {
    for (const t of [whole, ...parts]) t.dispose();
    throw error;
  }
  return { whole, parts };
}
