/**
 * The CUDA backend against the float64 reference and against the CPU backend. Needs an NVIDIA
 * GPU and the CUDA backend library; where either is missing, every test here is reported as
 * skipped, with the reason printed.
 */
import { describe, expect, it } from 'vitest';

import { backendStatus } from '../../lib/backend.js';
import { doctorReport } from '../../lib/doctor.js';
import { Rng } from '../../lib/random.js';
import { SparseAutoencoder } from '../../lib/sae/sae.js';
import { Tensor } from '../../lib/tensor.js';
import { normalArray, relError, roundBf16, uniformArray } from '../helpers/data.js';
import { trainOnPlanted } from '../helpers/planted.js';
import { defineSaeParityTests } from '../helpers/sae-parity.js';
import { defineTensorViewTests } from '../helpers/tensor-views.js';

const status = backendStatus();
const hasCuda = status.cuda.available;
if (!hasCuda) console.warn(`test/gpu: SKIPPED — the CUDA backend is not available: ${status.cuda.reason}`);

describe.skipIf(!hasCuda)('cuda backend', () => {
  it('doctor sees the GPU', () => {
    const r = doctorReport();
    console.log(`cuda: driver ${r.cuda.driverVersion}, runtime ${r.cuda.runtimeVersion}, ${JSON.stringify(r.cuda.devices)}`);
    expect(r.cuda.loaded).toBe(true);
    expect(r.cuda.devices!.length).toBeGreaterThan(0);
    expect(r.cuda.devices![0]!.multiprocessors).toBeGreaterThan(0);
  });

  it('round-trips and casts tensors of awkward sizes', () => {
    const rng = new Rng(3);
    for (const size of [1, 17, 4099]) {
      const data = uniformArray(rng, size, -5, 5);
      using t = Tensor.from(data, [size], { backend: 'cuda' });
      expect(t.toArray()).toEqual(data);
      using b = t.cast('bf16');
      expect(b.toFloat32()).toEqual(data.map(roundBf16));
      using i = t.cast('i32');
      expect(Array.from(i.toArray())).toEqual(Array.from(data, (v) => Math.trunc(v) + 0)); // + 0: an i32 has no -0
      using filled = Tensor.full([size], -1.25, { backend: 'cuda' });
      expect(filled.toArray().every((v) => v === -1.25)).toBe(true);
    }
  });

  it('out of memory is a MonosemanticError with the CUDA code and operation', () => {
    let error: unknown;
    try {
      Tensor.empty([2 ** 46], { backend: 'cuda' }); // 256 TiB
    } catch (e) {
      error = e;
    }
    expect(error).toMatchObject({ name: 'MonosemanticError', code: 'E_OOM', deviceCode: 2 });
    expect((error as Error).message).toMatch(/cudaMalloc|alloc/);
    using after = Tensor.full([8], 3, { backend: 'cuda' }); // the context survives
    expect(after.toArray()[7]).toBe(3);
  });

  describe('tensor views', () => {
    defineTensorViewTests('cuda');
  });

  describe('parity with the float64 reference', () => {
    defineSaeParityTests('cuda');
  });

  it('takes the same f32 training steps as the CPU backend', async () => {
    const [B, d, n] = [257, 96, 515];
    const rng = new Rng(21);
    const make = (backend: 'cpu' | 'cuda') =>
      SparseAutoencoder.create({ dIn: d, dSae: n, backend, precision: 'f32', seed: 4, l1Coeff: 0.3, lr: 1e-3 });
    using cpu = make('cpu');
    using gpu = make('cuda');
    for (let s = 0; s < 10; s++) {
      const data = normalArray(rng, B * d);
      using xc = Tensor.from(data, [B, d], { backend: 'cpu' });
      using xg = Tensor.from(data, [B, d], { backend: 'cuda' });
      const [a, b] = [await cpu.step(xc), await gpu.step(xg)];
      expect(Math.abs(a.loss - b.loss) / a.loss).toBeLessThan(1e-4);
    }
    const pc = cpu.readParameters();
    const pg = gpu.readParameters();
    for (const k of ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const) expect(relError(pg[k], pc[k]), k).toBeLessThan(1e-3);
    // Random data puts a few of the 1.3M pre-activations within rounding of 0: allow a few flips.
    const cc = cpu.fireCounts();
    const gc = gpu.fireCounts();
    let flips = 0;
    for (let i = 0; i < n; i++) flips += Math.abs(cc[i]! - gc[i]!);
    expect(flips).toBeLessThanOrEqual(5);
  });

  it.each(['f32', 'bf16'] as const)('recovers a planted dictionary (%s)', async (precision) => {
    const result = await trainOnPlanted('cuda', precision, 3000);
    console.log(`cuda ${precision} planted-dictionary recovery: ${JSON.stringify(result)}`);
    expect(result.recovery).toBeGreaterThanOrEqual(0.95);
  });
});
