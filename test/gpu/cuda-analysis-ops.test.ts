/**
 * The CUDA backend's feature-analysis ops (sparseRows, columnStats) against the CPU backend, on
 * awkward sizes and on shapes that take the kernels' grid-stride and chunked paths. Skipped, with
 * the reason printed, where the CUDA backend is not available.
 */
import { describe, expect, it } from 'vitest';

import { backendStatus } from '../../lib/backend.js';
import { CorrelationAccumulator } from '../../lib/analysis/universality.js';
import { columnStats, sparseRows } from '../../lib/ops.js';
import { Rng } from '../../lib/random.js';
import { Tensor } from '../../lib/tensor.js';
import { normalArray, relDiff, sparseActivations } from '../helpers/data.js';
import { expectSameValues } from '../helpers/same-values.js';

const status = backendStatus();
const hasCuda = status.cuda.available;
if (!hasCuda) console.warn(`test/gpu: SKIPPED — the CUDA backend is not available: ${status.cuda.reason}`);

describe.skipIf(!hasCuda)('cuda analysis ops', () => {
  // [rows, n, density]: ragged; a wide row (several tiles of 256); more rows than one grid (65535).
  const shapes: [number, number, number][] = [[333, 1031, 0.05], [9, 131_075, 0.01], [70_001, 33, 0.2]];
  for (const [rows, n, density] of shapes) {
    it(`sparseRows equals the CPU backend's on [${rows}, ${n}]`, async () => {
      const x = sparseActivations(new Rng(rows), rows, n, density);
      x[n + 3] = Number.NaN;
      for (const threshold of [0, 1.3]) {
        const out = [];
        for (const backend of ['cpu', 'cuda'] as const) {
          using t = Tensor.from(x, [rows, n], { backend });
          out.push(await sparseRows(t, { threshold, capacity: 16 }));
        }
        expectSameValues(out[1]!.rowPtr, out[0]!.rowPtr, 'rowPtr');
        expectSameValues(out[1]!.cols, out[0]!.cols, 'cols');
        expectSameValues(out[1]!.values, out[0]!.values, 'values');
      }
    });
  }

  // [rows, n]: ragged column tiles; more rows than 1024 chunks of 256 (longer chunks).
  for (const [rows, n] of [[1037, 131], [300_007, 3], [1, 1]] as const) {
    it(`columnStats agrees with the CPU backend on [${rows}, ${n}] and is deterministic`, async () => {
      const x = normalArray(new Rng(rows + n), rows * n);
      for (let i = 0; i < x.length; i += 3) x[i] = 0;
      using c = Tensor.from(x, [rows, n], { backend: 'cpu' });
      using g = Tensor.from(x, [rows, n], { backend: 'cuda' });
      const cpu = await columnStats(c);
      const gpu = await columnStats(g);
      expect(await columnStats(g)).toEqual(gpu);
      expect(gpu.nonzero).toEqual(cpu.nonzero);
      for (let j = 0; j < n; j++) {
        expect(Math.abs(gpu.sum[j]! - cpu.sum[j]!)).toBeLessThan(1e-9 * Math.sqrt(cpu.sumsq[j]!) + 1e-300);
        expect(relDiff(gpu.sumsq[j]!, cpu.sumsq[j]!)).toBeLessThan(1e-12);
      }
    });
  }
  // CorrelationAccumulator centred (the default) on CUDA: the shifts from the first chunk's columnStats,
  // add() of the tiled shifts, the f32 cross products through linearBackward's dW (gemm<float>,
  // ragged tiles), more chunks than one flush, a last chunk of other rows (re-tiled shifts).
  it('CorrelationAccumulator (centred) on CUDA matches the CPU, always-on and constant units included', async () => {
    const [nA, nB, rows, chunks, lastRows] = [67, 45, 509, 19, 130];
    const rng = new Rng(8);
    const N = rows * (chunks - 1) + lastRows;
    const a = new Float32Array(N * nA);
    const b = new Float32Array(N * nB);
    for (let r = 0; r < N; r++) {
      const z = rng.normal();
      for (let i = 0; i < nA; i++) a[r * nA + i] = i === 0 ? 300 + z : i === 1 ? 7 : (i % 3) * z + rng.normal(); // 0: always on; 1: constant
      for (let j = 0; j < nB; j++) b[r * nB + j] = j === 0 ? 300 + 0.6 * z + 0.8 * rng.normal() : rng.normal() + (j % 5 === 0 ? 0.3 * z : 0);
    }
    const results: Record<string, { index: Int32Array; correlation: Float64Array }> = {};
    for (const backend of ['cpu', 'cuda'] as const) {
      using acc = new CorrelationAccumulator(nA, nB);
      expect(acc.centre).toBe(true);
      for (let c = 0, r0 = 0; c < chunks; c++) {
        const n = c === chunks - 1 ? lastRows : rows;
        using ta = Tensor.from(a.subarray(r0 * nA, (r0 + n) * nA), [n, nA], { backend });
        using tb = Tensor.from(b.subarray(r0 * nB, (r0 + n) * nB), [n, nB], { backend });
        await acc.add(ta, tb);
        r0 += n;
      }
      expect(acc.rows).toBe(N);
      results[backend] = acc.bestMatches();
    }
    const [c, g] = [results.cpu!, results.cuda!];
    expect(g.index[1]).toBe(-1); // the constant unit has no correlation
    expect(g.correlation[1]).toBeNaN();
    expect(g.index[0]).toBe(0); // the always-on pair is found
    expect(g.correlation[0]).toBeGreaterThan(0.5);
    for (let i = 0; i < nA; i++) {
      if (c.index[i] === -1) {
        expect(g.index[i], `unit ${i}`).toBe(-1);
        continue;
      }
      expect(Math.abs(g.correlation[i]! - c.correlation[i]!), `unit ${i}`).toBeLessThan(1e-5);
    }
  });
});
