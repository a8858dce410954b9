/**
 * Plain bf16 products on CUDA into NaN-filled outputs, for comparing the GEMM's kernel paths (the
 * variables that choose them are read at each call). Shapes are [rows, k, n]: x [rows, k].
 */
import { linearBackward } from '../../lib/lm/grad-ops.js';
import { linear, linearT } from '../../lib/lm/ops.js';
import { Tensor } from '../../lib/tensor.js';

type Shape = readonly [rows: number, k: number, n: number];

/** x W (NN: linear, W [k, n]) or x Wᵀ (NT: linearT, W [n, k]) at bf16, [rows, n]. */
export async function bf16Product(order: 'NN' | 'NT', x: Float32Array, w: Float32Array, [rows, k, n]: Shape): Promise<Float32Array> {
  using tx = Tensor.from(x, [rows, k], { backend: 'cuda' });
  using tw = Tensor.from(w, order === 'NN' ? [k, n] : [n, k], { backend: 'cuda' });
  using out = Tensor.full([rows, n], Number.NaN, { backend: 'cuda' });
  await (order === 'NN' ? linear : linearT)(tx, tw, null, out, 'bf16');
  return out.toFloat32();
}

/** linearBackward at bf16 for dout [rows, n] through W [k, n]: dx (NT, into NaN) and dW (TN, added onto zeros). */
export async function bf16LinearBackward(dout: Float32Array, x: Float32Array, w: Float32Array, [rows, k, n]: Shape): Promise<{ dx: Float32Array; dw: Float32Array }> {
  using tx = Tensor.from(x, [rows, k], { backend: 'cuda' });
  using tw = Tensor.from(w, [k, n], { backend: 'cuda' });
  using td = Tensor.from(dout, [rows, n], { backend: 'cuda' });
  using dx = Tensor.full([rows, k], Number.NaN, { backend: 'cuda' });
  using dw = Tensor.zeros([k, n], { backend: 'cuda' });
  using db = Tensor.zeros([n], { backend: 'cuda' });
  await linearBackward(td, tx, tw, dx, dw, db, 'bf16');
  return { dx: dx.toFloat32(), dw: dw.toFloat32() };
}
