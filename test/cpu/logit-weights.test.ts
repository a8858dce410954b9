/**
 * Logit weights against a float64 reference on the fixture model with an untied unembedding:
 * W_dec row → MLP c_proj → centred and scaled by ln_f's gain → lm_head, median-shifted.
 */
import path from 'node:path';

import { expect, it } from 'vitest';

import { logitWeights } from '../../lib/analysis/logit-weights.js';
import { loadGpt2Config } from '../../lib/lm/config.js';
import { loadGpt2Weights } from '../../lib/lm/weights.js';
import { packageRoot } from '../../lib/native/load.js';
import { Rng } from '../../lib/random.js';

it('top and bottom tokens and their median-shifted weights match float64', async () => {
  const dir = path.join(packageRoot(), 'test/fixtures/gpt2/tiny-relu-untied');
  const config = await loadGpt2Config(dir);
  const weights = await loadGpt2Weights(dir, config);
  const { dModel: C, dMlp: M, vocabSize: V } = config;
  const n = 37; // features: more than one chunk of 16
  const rng = new Rng(4);
  const W_dec = rng.fillNormal(new Float32Array(n * M));
  const result = await logitWeights(W_dec, n, config, weights, 0, { k: 6, backend: 'cpu', chunk: 16 });
  expect(result.length).toBe(n);
  for (let i = 0; i < n; i++) {
    const r = new Float64Array(C);
    for (let c = 0; c < C; c++) for (let j = 0; j < M; j++) r[c]! += W_dec[i * M + j]! * weights.layers[0]!.fcProjW[j * C + c]!;
    const mean = r.reduce((a, b) => a + b, 0) / C;
    for (let c = 0; c < C; c++) r[c] = (r[c]! - mean) * weights.lnFW[c]!;
    const logits = new Float64Array(V);
    for (let v = 0; v < V; v++) for (let c = 0; c < C; c++) logits[v]! += r[c]! * weights.lmHead![v * C + c]!;
    const sorted = Float64Array.from(logits).sort();
    const median = V % 2 ? sorted[(V - 1) / 2]! : (sorted[V / 2 - 1]! + sorted[V / 2]!) / 2;
    const order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]!);
    const scale = Math.max(...logits.map(Math.abs));
    expect(result[i]!.top.map(([id]) => id)).toEqual(order.slice(0, 6));
    expect(result[i]!.bottom.map(([id]) => id)).toEqual(order.slice(-6).reverse());
    for (const [id, w] of [...result[i]!.top, ...result[i]!.bottom]) expect(Math.abs(w - (logits[id]! - median))).toBeLessThan(1e-4 * scale + 1e-4);
  }
});
