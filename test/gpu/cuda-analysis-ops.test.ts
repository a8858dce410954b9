/**
 * The CUDA backend's feature-analysis ops (sparseRows, columnStats) against the CPU backend, on
 * awkward sizes and on shapes that take the kernels' grid-stride and chunked paths. Skipped, with
 * the reason printed, where the CUDA backend is not available.
 */
import { describe, expect, it } from 'vitest';

import { backendStatus } from '../../lib/backend.js';
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
});
