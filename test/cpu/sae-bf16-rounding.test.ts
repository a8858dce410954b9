/**
 * The CPU SAE's bf16 mode rounds exactly the operands it says it rounds (native/cpu/sae_cpu.cpp,
 * sae_sparse_cpu.cpp), checked against a float64 model of those roundings. The parity suite's bf16
 * tolerance (2e-2, against the unrounded reference) cannot see a rounding that is skipped: fp32
 * arithmetic is inside it. Here the inputs are NOT bf16-representable (x, W_enc, W_dec drawn in
 * fp32, b_dec ≠ 0, so x − b_dec is not either), and every product operand is rounded in the model
 * where the kernels round it:
 *
 *   xc = bf16(fp32(x − b_dec))       encoder  f = ReLU(xc · bf16(W_enc) + b_enc)
 *   decode   x̂ = bf16(f) · bf16(W_dec) + b_dec
 *   g = fp32(2/B) · fp32(x̂ − x)      dW_dec = bf16(f)ᵀ · bf16(g)
 *   gp = (bf16(g) · bf16(W_dec)ᵀ + λ/B) masked by f > 0       dW_enc = xcᵀ · bf16(gp)
 *   db_enc = Σ_b gp (unrounded)      db_dec = Σ_b g − W_enc · db_enc (unrounded)
 *
 * Every product of two bf16 values is exact in fp32, so the kernels differ from the model only by
 * fp32 accumulation: 1e-5 relative (Frobenius; measured 6e-8). Dropping any one of the roundings
 * moves some result by the bf16 rounding error of an operand: 7e-4 to 8e-3 relative, measured for
 * each. Two places need care:
 *   - g is built from the kernel's own x̂ (sae.decode runs the step's product, bit for bit), so
 *     bf16(g) is the kernel's exactly; a float64 g would round to the other bf16 neighbour
 *     wherever fp32 rounding straddles a bf16 boundary.
 *   - gp cannot be taken from the kernel, and each such straddle of a gp value moves dW_enc by
 *     about 2e-5; dW_enc's tolerance is 1e-4, still ten times below a skipped rounding's effect.
 * The sparse products (MONOSEMANTIC_CPU_SAE_SPARSE=always) must give the same roundings: the
 * same model, and the dense products' gradients. They sum the same exact products in another
 * order, so their g may straddle a bf16 boundary where the dense decode's does not: 1e-4 for every
 * gradient there (on this machine they agree with the dense ones to 2e-8).
 */
import { afterEach, describe, expect, it } from 'vitest';

import { SparseAutoencoder } from '../../lib/sae/sae.js';
import { Tensor } from '../../lib/tensor.js';
import { relError, roundArrayBf16, toF64 } from '../helpers/data.js';
import { drawCase } from '../helpers/sae-parity.js';
import { linearBackwardRef } from '../reference/transformer-grad-reference.js';
import { linearRef } from '../reference/transformer-reference.js';

const [B, d, n] = [130, 72, 301];
const l1Coeff = 0.7;
const names = ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const;
type Name = (typeof names)[number];

const mode = process.env.MONOSEMANTIC_CPU_SAE_SPARSE;
afterEach(() => {
  if (mode === undefined) delete process.env.MONOSEMANTIC_CPU_SAE_SPARSE;
  else process.env.MONOSEMANTIC_CPU_SAE_SPARSE = mode;
});

// Parameters and inputs in fp32, none of them rounded to bf16 (drawCase's f32 case: b_dec uniform in ±0.5).
const drawn = drawCase({ B, d, n, penalty: 'l1', precision: 'f32' }, 4242);
const { W_enc, b_enc, W_dec, b_dec } = drawn.params;
const x = drawn.x;

/** What one precision gives on the drawn batch: the step's gradients, encode's f and decode's x̂ of that f. */
async function run(precision: 'f32' | 'bf16', products: 'never' | 'always') {
  process.env.MONOSEMANTIC_CPU_SAE_SPARSE = products;
  using sae = SparseAutoencoder.create({ dIn: d, dSae: n, backend: 'cpu', penalty: 'l1', precision, l1Coeff });
  sae.writeParameters(drawn.params);
  using xt = Tensor.from(x, [B, d], { backend: 'cpu' });
  for (const t of Object.values(sae.gradients)) t.fill(Number.NaN);
  await sae.computeGradients(xt);
  const grads = Object.fromEntries(names.map((k) => [k, sae.gradients[k].toFloat32()])) as Record<Name, Float32Array>;
  using f = Tensor.full([B, n], Number.NaN, { backend: 'cpu' });
  await sae.encode(xt, f);
  using xhat = Tensor.full([B, d], Number.NaN, { backend: 'cpu' });
  await sae.decode(f, xhat);
  return { grads, f: f.toFloat32(), xhat: xhat.toFloat32() };
}

/** The float64 model of the bf16 encoder: f = ReLU(xc · bf16(W_enc) + b_enc), and xc = bf16(fp32(x − b_dec)). */
function encodeModel(): { xc: Float64Array; f: Float64Array } {
  const xc = new Float64Array(B * d);
  for (let b = 0; b < B; b++) for (let k = 0; k < d; k++) xc[b * d + k] = Math.fround(x[b * d + k]! - b_dec[k]!); // xc[b, k]
  const xcR = toF64(roundArrayBf16(Float32Array.from(xc)));
  const f = linearRef(xcR, roundArrayBf16(W_enc), b_enc, B, d, n, false).map((v) => Math.max(0, v)); // f [B, n]
  return { xc: xcR, f };
}

/** x̂ = bf16(f) · bf16(W_dec) + b_dec in float64, for the kernel's own f. */
function decodeModel(f: Float32Array): Float64Array {
  return linearRef(roundArrayBf16(f), roundArrayBf16(W_dec), b_dec, B, n, d, false); // x̂ [B, d]
}

/** The gradients with the kernels' roundings, from the kernel's f and x̂ (see the header). */
function gradsModel(f: Float32Array, xhat: Float32Array): Record<Name, Float64Array> {
  const xcR = encodeModel().xc;
  const fR = roundArrayBf16(f);
  const WdecR = roundArrayBf16(W_dec);
  const gScale = Math.fround(2 / B);
  const g = new Float32Array(B * d);
  for (let e = 0; e < B * d; e++) g[e] = Math.fround(gScale * Math.fround(xhat[e]! - x[e]!)); // g[b, j], as the kernel computes it
  const gR = roundArrayBf16(g);
  const l1Scale = Math.fround(Math.fround(l1Coeff) / B);

  // The decoder product x̂ = f W_dec + b_dec backwards from g: dW_dec = fᵀ g [n, d], and g W_decᵀ [B, n].
  const decoder = linearBackwardRef(gR, fR, WdecR, B, n, d, false);
  const dW_dec = decoder.dW;
  const gp = decoder.dx.map((v, e) => (f[e]! > 0 ? v + l1Scale : 0)); // gp[b, i], masked by f > 0
  const gpR = roundArrayBf16(Float32Array.from(gp));
  // The encoder product backwards from gp: dW_enc = xcᵀ gp [d, n] (its dx is not used).
  const dW_enc = linearBackwardRef(gpR, xcR, W_enc, B, d, n, false).dW;
  const db_enc = new Float64Array(n);
  for (let b = 0; b < B; b++) for (let i = 0; i < n; i++) db_enc[i] = db_enc[i]! + gp[b * n + i]!;
  const db_dec = new Float64Array(d);
  for (let k = 0; k < d; k++) {
    let s = 0;
    for (let b = 0; b < B; b++) s += g[b * d + k]!;
    for (let i = 0; i < n; i++) s -= W_enc[k * n + i]! * db_enc[i]!; // W_enc[k, i] unrounded
    db_dec[k] = s;
  }
  return { W_enc: dW_enc, b_enc: db_enc, W_dec: dW_dec, b_dec: db_dec };
}

const TOL: Record<'never' | 'always', Record<Name, number>> = {
  never: { W_enc: 1e-4, b_enc: 1e-5, W_dec: 1e-5, b_dec: 1e-5 },
  always: { W_enc: 1e-4, b_enc: 1e-4, W_dec: 1e-4, b_dec: 1e-4 },
};

describe('CPU SAE, bf16 precision, inputs not representable in bf16', () => {
  it('the inputs really are not bf16 values (else a skipped rounding changes nothing)', () => {
    const moved = (a: Float32Array) => roundArrayBf16(a).filter((v, i) => v !== a[i]).length / a.length;
    for (const a of [x, W_enc, W_dec, b_dec]) expect(moved(a)).toBeGreaterThan(0.95);
  });

  it('encode and decode equal the float64 model that rounds x − b_dec, W_enc, f and W_dec to bf16 (1e-5)', async () => {
    const got = await run('bf16', 'never');
    const model = encodeModel();
    expect(relError(got.f, model.f)).toBeLessThan(1e-5);
    expect(relError(got.xhat, decodeModel(got.f))).toBeLessThan(1e-5);
    // And the roundings matter: the fp32 encoder's f is more than 1e-4 away from the model's.
    const f32 = await run('f32', 'never');
    expect(relError(f32.f, model.f)).toBeGreaterThan(1e-4);
  });

  it.each(['never', 'always'] as const)('the gradients equal the float64 model that rounds f, g, gp, x − b_dec and the weights (sparse products: %s)', async (products) => {
    const got = await run('bf16', products);
    const model = gradsModel(got.f, got.xhat);
    for (const k of names) expect(relError(got.grads[k], model[k]), k).toBeLessThan(TOL[products][k]);
    // The model is not the fp32 computation: each gradient is further than its tolerance from it.
    const f32 = await run('f32', 'never');
    for (const k of names) expect(relError(f32.grads[k], model[k]), `f32 ${k}`).toBeGreaterThan(10 * TOL.never[k]);
  });

  it('the sparse products give the dense products’ bf16 gradients within 1e-4', async () => {
    const dense = await run('bf16', 'never');
    const sparse = await run('bf16', 'always');
    for (const k of names) expect(relError(sparse.grads[k], toF64(dense.grads[k])), k).toBeLessThan(1e-4);
  });
});
