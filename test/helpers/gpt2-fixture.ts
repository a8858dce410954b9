/** The tiny GPT-2 fixtures under test/fixtures/gpt2 (HF model directories made by PyTorch): one's directory, config and weights. */
import path from 'node:path';

import { type Gpt2Config, loadGpt2Config } from '../../lib/lm/config.js';
import { type Gpt2Weights, loadGpt2Weights } from '../../lib/lm/weights.js';
import { packageRoot } from '../../lib/native/load.js';

export const GPT2_FIXTURES = path.join(packageRoot(), 'test/fixtures/gpt2');

export async function gpt2Fixture(name: string): Promise<{ dir: string; config: Gpt2Config; weights: Gpt2Weights }> {
  const dir = path.join(GPT2_FIXTURES, name);
  const config = await loadGpt2Config(dir);
  return { dir, config, weights: await loadGpt2Weights(dir, config) };
}
