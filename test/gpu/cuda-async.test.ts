/**
 * The default CUDA mode (operations queued from the JS thread, settled at once) against
 * MONOSEMANTIC_CUDA_ASYNC=0 (each operation complete before it settles): the same program
 * (test/helpers/cuda-mode-probe.mjs: bf16 SAE steps with inputs disposed as soon as the step is
 * queued, a GPT-2 forward, the tiled attention forward and two training steps) must give the same
 * bits in both, since the kernels and their order are the same (but for the atomics of the
 * training backward: the embedding's, and the layer norms' and biases' column sums over chunks of rows). The mode is read when the backend
 * starts, so each runs in a child process. Skipped, with the reason printed, where the CUDA
 * backend is not available.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { backendStatus } from '../../lib/backend.js';
import { packageRoot } from '../../lib/native/load.js';
import { Rng } from '../../lib/random.js';
import { SparseAutoencoder } from '../../lib/sae/sae.js';
import { Tensor } from '../../lib/tensor.js';

const status = backendStatus();
const hasCuda = status.cuda.available;
if (!hasCuda) console.warn(`test/gpu: SKIPPED — the CUDA backend is not available: ${status.cuda.reason}`);

const probe = path.join(packageRoot(), 'test/helpers/cuda-mode-probe.mjs');

function runProbe(asyncOps: boolean): Record<string, unknown> {
  if (!existsSync(path.join(packageRoot(), 'dist/lib/backend.js'))) throw new Error('dist/ is missing: run `npm run build:ts` first (npm test does)');
  const env = { ...process.env, MONOSEMANTIC_CUDA_ASYNC: asyncOps ? '1' : '0' };
  const r = spawnSync(process.execPath, [probe], { encoding: 'utf8', env, timeout: 300_000 });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
}

describe.skipIf(!hasCuda)('cuda operation modes', () => {
  it('queued operations give the same bits as operations completed one by one', () => {
    const sync = runProbe(false);
    const queued = runProbe(true);
    expect(sync.asyncOps).toBe(false);
    expect(queued.asyncOps).toBe(true);
    // The training backward adds with atomics in no fixed order (the embedding's gradient, and the
    // column sums of the layer norms' and biases' gradients): the second training step's loss
    // agrees to rounding, everything else to the bit.
    const { asyncOps: _a, trainLosses: lossesA, ...a } = sync;
    const { asyncOps: _b, trainLosses: lossesB, ...b } = queued;
    expect(b).toEqual(a);
    const [la, lb] = [lossesA as number[], lossesB as number[]];
    expect(lb[0]).toBe(la[0]);
    expect(Math.abs(lb[1]! - la[1]!) / la[1]!).toBeLessThan(1e-5);
  }, 600_000);

  // Uploads up to 16 MiB go through a 32 MiB pinned staging ring (native/cuda/memory.cu): with SAE
  // steps queued ahead, thousands of uploads wrap the ring many times while their copies wait
  // behind the steps; a region reused too early would corrupt an earlier upload. The host buffer
  // is overwritten right after each upload, and a few uploads are too large for the ring.
  it('uploads through the staging ring land intact while the device is busy', async () => {
    using sae = SparseAutoencoder.create({ dIn: 512, dSae: 16384, backend: 'cuda', precision: 'bf16', seed: 1 });
    using x = Tensor.from(new Rng(1).fillNormal(new Float32Array(4096 * 512)), [4096, 512], { backend: 'cuda' });
    for (let i = 0; i < 10; i++) await sae.queueStep(x);
    const rng = new Rng(2);
    const sizes = Array.from({ length: 3000 }, (_, i) => (i % 1000 === 999 ? 5_000_000 : 1 + rng.int(65536)));
    const host = new Float32Array(5_000_000);
    const fillFor = (i: number, n: number) => {
      for (let k = 0; k < n; k++) host[k] = ((i * 7919) % 16384) * 1024 + (k % 1024); // exact in f32, distinct per upload
    };
    const uploaded: Tensor[] = [];
    try {
      for (const [i, n] of sizes.entries()) {
        fillFor(i, n);
        uploaded.push(Tensor.from(host.subarray(0, n), [n], { backend: 'cuda' }));
        host.fill(Number.NaN, 0, n); // the source is reused at once
      }
      for (const [i, n] of sizes.entries()) {
        const got = uploaded[i]!.toArray() as Float32Array;
        fillFor(i, n);
        let bad = -1;
        for (let k = 0; k < n && bad < 0; k++) if (got[k] !== host[k]) bad = k;
        expect(bad, `upload ${i} (${n} floats) differs at ${bad}`).toBe(-1);
      }
    } finally {
      for (const t of uploaded) t.dispose();
    }
  }, 300_000);
});
