/**
 * The default CUDA mode (operations queued from the JS thread, settled at once) against
 * MONOSEMANTIC_CUDA_ASYNC=0 (each operation complete before it settles): the same program
 * (test/helpers/cuda-mode-probe.mjs: bf16 SAE steps with inputs disposed as soon as the step is
 * queued, a GPT-2 forward, the tiled attention forward and two training steps) must give the same
 * bits in both, since the kernels and their order are the same (but for the atomics of the
 * embedding backward). The mode is read when the backend
 * starts, so each runs in a child process. Skipped, with the reason printed, where the CUDA
 * backend is not available.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { backendStatus } from '../../lib/backend.js';
import { packageRoot } from '../../lib/native/load.js';

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
    // The embedding backward adds with atomics in no fixed order: the second training step's loss
    // agrees to rounding, everything else to the bit.
    const { asyncOps: _a, trainLosses: lossesA, ...a } = sync;
    const { asyncOps: _b, trainLosses: lossesB, ...b } = queued;
    expect(b).toEqual(a);
    const [la, lb] = [lossesA as number[], lossesB as number[]];
    expect(lb[0]).toBe(la[0]);
    expect(Math.abs(lb[1]! - la[1]!) / la[1]!).toBeLessThan(1e-5);
  }, 600_000);
});
