/**
 * An operation's outputs may not share memory with its other operands (the kernels read inputs
 * while they write outputs): the same tensor or overlapping views of one allocation are refused,
 * naming both operands, before anything runs; disjoint views of one allocation are fine.
 */
import { expect, it } from 'vitest';

import { activationBackward, adamW } from '../../lib/lm/grad-ops.js';
import { activation, add, crossEntropy, embed, klRows, layerNorm, linear, linearQkv, splitQkv } from '../../lib/lm/ops.js';
import { gatherRows, rowSqDist } from '../../lib/ops.js';
import { SparseAutoencoder } from '../../lib/sae/sae.js';
import { Tensor } from '../../lib/tensor.js';

const backend = 'cpu' as const;
const i32 = (values: number[]) => Tensor.from(Int32Array.from(values), [values.length], { dtype: 'i32', backend });

it('refuses outputs that are, or overlap, an input', async () => {
  using wte = Tensor.from(Float32Array.from({ length: 8 }, (_, i) => i), [4, 2], { backend });
  using wpe = Tensor.full([4, 2], 1, { backend });
  using ids = i32([1, 0, 3, 2]);
  await expect(async () => embed(ids, 1, 4, wte, wpe, 0, wte, null)).rejects.toThrow('tokOut must not be the same tensor as wte');

  using x = Tensor.from([1, 2, 3, 7], [2, 2], { backend });
  using w = Tensor.from([2, 3], [2], { backend });
  using b = Tensor.zeros([2], { backend });
  using out = Tensor.zeros([2, 2], { backend });
  using rstd = Tensor.zeros([2], { backend });
  await expect(async () => layerNorm(x, w, b, 0, out, { mean: w, rstd })).rejects.toThrow('saved.mean must not be the same tensor as weight');

  using packed = Tensor.from(Float32Array.from({ length: 6 }, (_, i) => i + 1), [6], { backend });
  using qkv = packed.view(0, [1, 6]);
  using kCache = packed.view(0, [1, 3, 2]);
  using q = Tensor.zeros([1, 2], { backend });
  using v = Tensor.zeros([1, 3, 2], { backend });
  await expect(async () => splitQkv(qkv, 1, 1, 2, q, kCache, v, 3, 0)).rejects.toThrow('kCache must not overlap qkv (views of one allocation)');
  // linearQkv: q and the caches against x, the weight and each other.
  using xq = packed.view(0, [1, 2]);
  using wq = Tensor.zeros([2, 6], { backend });
  using cacheK = Tensor.zeros([1, 3, 2], { backend });
  await expect(async () => linearQkv(xq, wq, null, 1, 1, 2, q, kCache, v, 3, 0, 'f32')).rejects.toThrow('kCache must not overlap x (views of one allocation)');
  await expect(async () => linearQkv(xq, wq, null, 1, 1, 2, q, cacheK, cacheK, 3, 0, 'f32')).rejects.toThrow('kCache must not be the same tensor as vCache');

  // Views of one allocation: overlapping ones are refused, disjoint ones work.
  using buffer = Tensor.from(Float32Array.from({ length: 256 }, (_, i) => i), [256], { backend });
  using src = buffer.view(0, [4, 16]); // elements 0..63
  using inside = buffer.view(0, [2, 16]);
  using after = buffer.view(64, [2, 16]); // elements 64..95
  using idx = i32([3, 1]);
  await expect(async () => gatherRows(src, idx, inside)).rejects.toThrow('dst must not overlap src (views of one allocation)');
  await gatherRows(src, idx, after);
  expect(Array.from(after.toArray() as Float32Array)).toEqual([...Array.from({ length: 16 }, (_, i) => 48 + i), ...Array.from({ length: 16 }, (_, i) => 16 + i)]);

  using x2 = buffer.view(128, [2, 2]);
  using y2 = buffer.view(128, [2, 2]);
  using weight = Tensor.from([0, 1, 1, 0], [2, 2], { backend });
  await expect(async () => linear(x2, weight, null, y2, 'f32')).rejects.toThrow(/out must not .* x/);

  // Ops that may work in place take out === the input itself, but not a shifted view of it.
  // (Views start at multiples of 64 elements: rows of 64.)
  using grid = Tensor.from(Float32Array.from({ length: 320 }, (_, i) => (i % 7) - 3), [320], { backend });
  using rowsA = grid.view(0, [4, 64]); // elements 0..255
  using shifted = grid.view(64, [4, 64]); // elements 64..319: one row on
  using ones = Tensor.full([64], 1, { backend });
  using zeros = Tensor.zeros([64], { backend });
  await expect(async () => layerNorm(rowsA, ones, zeros, 1e-5, shifted)).rejects.toThrow('out must be x itself or not overlap it (views of one allocation)');
  await expect(async () => activation('relu', rowsA, shifted)).rejects.toThrow('out must be x itself or not overlap it');
  using other = Tensor.full([4, 64], 2, { backend });
  await expect(async () => add(other, rowsA, shifted)).rejects.toThrow('out must be b itself or not overlap it');
  using targets = i32([0, 1, 2, 3]);
  using perRow = grid.view(64, [4]); // inside row 1 of rowsA
  await expect(async () => crossEntropy(rowsA, targets, perRow)).rejects.toThrow('out must not overlap logits (views of one allocation)');
  await expect(async () => klRows(rowsA, other, perRow)).rejects.toThrow('out must not overlap p (views of one allocation)');
  await expect(async () => rowSqDist(rowsA, other, perRow)).rejects.toThrow('out must not overlap a (views of one allocation)');
  // In place on the tensor itself still works.
  await add(other, rowsA, rowsA);
  await activation('relu', rowsA, rowsA);
  await layerNorm(rowsA, ones, zeros, 1e-5, rowsA);

  using sae = SparseAutoencoder.create({ dIn: 4, dSae: 8, backend });
  using input = Tensor.full([1, 4], 0.5, { backend });
  using encView = sae.parameters.W_enc.view(0, [1, 8]);
  await expect(async () => sae.encode(input, encView)).rejects.toThrow(/out must not be \(or overlap\)/);
  // A step's input inside what the step writes (its gradients, here) is refused too.
  using inGrads = sae.gradients.W_enc.view(0, [2, 4]);
  await expect(async () => sae.step(inGrads)).rejects.toThrow("x must not be (or overlap) one of this SAE's own tensors");
  await expect(async () => sae.computeGradients(inGrads)).rejects.toThrow("x must not be (or overlap) one of this SAE's own tensors");
});

it('refuses a bias inside the output, a partly overlapping dpre, and a clip norm inside the parameters', async () => {
  using buffer = Tensor.from(Float32Array.from({ length: 128 }, (_, i) => i % 5), [128], { backend });
  using x = Tensor.from([1, 2, 3, 4], [2, 2], { backend });
  using weight = Tensor.from([0, 1, 1, 0], [2, 2], { backend });
  using out = buffer.view(0, [2, 2]);
  using bias = buffer.view(0, [2]); // out's first row
  await expect(async () => linear(x, weight, bias, out, 'f32')).rejects.toThrow('out must not overlap bias (views of one allocation)');

  using pre = Tensor.from(Float32Array.from({ length: 128 }, (_, i) => (i % 3) - 1), [128], { backend });
  using gradients = Tensor.from(Float32Array.from({ length: 256 }, (_, i) => i + 1), [256], { backend });
  using wide = gradients.view(0, [128]); // elements 0..127
  using shifted = gradients.view(64, [128]); // elements 64..191: half of wide
  await expect(async () => activationBackward('relu', wide, pre, shifted)).rejects.toThrow('dpre must be dpost itself or not overlap it');
  await activationBackward('relu', wide, pre, wide); // in place on the tensor itself

  using params = Tensor.full([128], 1, { backend });
  using grad = Tensor.full([64], 0.5, { backend });
  using m = Tensor.zeros([64], { backend });
  using v = Tensor.zeros([64], { backend });
  using param = params.view(0, [64]);
  using norm = params.view(64, [1]); // the same allocation, outside param: accepted
  using inParam = params.view(0, [1]);
  const hp = { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1 };
  await expect(async () => adamW(param, grad, m, v, { ...hp, clip: { sumSquares: inParam, maxNorm: 1 } })).rejects.toThrow('param must not overlap clip.sumSquares');
  await adamW(param, grad, m, v, { ...hp, clip: { sumSquares: norm, maxNorm: 1 } });
});

it('names the operand when rows have no columns', async () => {
  using empty = Tensor.empty([3, 0], { backend });
  await expect(async () => rowSqDist(empty, null)).rejects.toThrow('a must have shape [rows >= 1, d >= 1] (got [3, 0])');
  using src = Tensor.empty([4, 0], { backend });
  using dst = Tensor.empty([2, 0], { backend });
  using idx = i32([0, 1]);
  await expect(async () => gatherRows(src, idx, dst)).rejects.toThrow('src and dst must be [rows, d >= 1] with the same d (got [4, 0] and [2, 0])');
});
