/**
 * The harvest of the next window keeps going while a reader awaits only settled promises, as the
 * SAE trainer does on a backend whose operations only queue device work (CUDA): the activation
 * stream lets the event loop turn now and then, and the harvest's own waits on it (here a timer
 * in each forward, and the serving order's draws) complete before the window in use runs out.
 * The backend's gather is replaced by one that settles at once, as a queued CUDA operation does.
 */
import { describe, expect, it, vi } from 'vitest';

vi.mock('../../lib/ops.js', async (original) => ({ ...(await original<typeof import('../../lib/ops.js')>()), gatherRows: vi.fn(() => Promise.resolve()) }));

import { type ContextSource, LmActivationSource } from '../../lib/data/lm-activations.js';
import type { Gpt2Model } from '../../lib/lm/model.js';
import { Tensor } from '../../lib/tensor.js';

const T = 64;
const WIDTH = 4;
const WINDOW = 4; // contexts per window, one per forward

function contexts(): Promise<ContextSource> {
  return Promise.resolve({
    next: async (count: number) => new Int32Array(count * T).fill(1),
    state: () => null,
  });
}

describe('LmActivationSource with a reader that never waits on the event loop', () => {
  it('harvests the next window while the current one is served', async () => {
    let forwards = 0;
    const source = await LmActivationSource.open({
      model: { hooks: [{ name: 'h', width: WIDTH }], backend: 'cpu' } as unknown as Gpt2Model,
      hook: 'h',
      openContexts: contexts,
      contextLength: T,
      seed: 1,
      positionsPerContext: T - 1,
      contextsPerWindow: WINDOW,
      forwardBatch: 1,
      harvest: async (_ids, count) => {
        forwards++;
        await new Promise((resolve) => setTimeout(resolve, 0)); // a wait on the event loop
        return Tensor.empty([count * T, WIDTH], { backend: 'cpu' });
      },
    });
    try {
      expect(forwards).toBeLessThanOrEqual(WINDOW + 1); // the first window, and the next one's first forward begun
      using out = Tensor.empty([1, WIDTH], { backend: 'cpu' });
      const rows = WINDOW * (T - 1);
      // Every row of the first window but the last, one at a time, each read taking ~0.2 ms.
      for (let r = 0; r < rows - 1; r++) {
        const until = performance.now() + 0.2;
        while (performance.now() < until);
        await source.next(1, out);
      }
      // The second window's forwards all ran before the first window was used up.
      expect(forwards).toBe(2 * WINDOW);
    } finally {
      await source.close();
    }
  });
});
