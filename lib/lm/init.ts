/**
 * Fresh GPT-2 weights for training, initialised as GPT-2 / Hugging Face's GPT2PreTrainedModel do:
 * every matrix and embedding normal(0, std), the residual-stream projections (attn.c_proj,
 * mlp.c_proj) normal(0, std / √(2 nLayer)), biases 0, LayerNorm gains 1 and shifts 0. Seeded.
 */
import { Rng } from '../random.js';
import type { Gpt2Config } from './config.js';
import type { Gpt2LayerWeights, Gpt2Weights } from './weights.js';

export function initGpt2Weights(config: Gpt2Config, seed: number, std = 0.02): Gpt2Weights {
  if (!(std > 0) || !Number.isFinite(std)) throw new RangeError(`std must be a positive number (got ${std})`);
  const rng = new Rng(seed);
  const C = config.dModel;
  const M = config.dMlp;
  const normal = (count: number, s: number) => rng.fillNormal(new Float32Array(count), s);
  const ones = (count: number) => new Float32Array(count).fill(1);
  const residualStd = std / Math.sqrt(2 * config.nLayer);
  const wte = normal(config.vocabSize * C, std);
  const wpe = normal(config.nPositions * C, std);
  const layers: Gpt2LayerWeights[] = [];
  for (let L = 0; L < config.nLayer; L++) {
    layers.push({
      ln1W: ones(C), ln1B: new Float32Array(C),
      attnW: normal(C * 3 * C, std), attnB: new Float32Array(3 * C),
      projW: normal(C * C, residualStd), projB: new Float32Array(C),
      ln2W: ones(C), ln2B: new Float32Array(C),
      fcW: normal(C * M, std), fcB: new Float32Array(M),
      fcProjW: normal(M * C, residualStd), fcProjB: new Float32Array(C),
    });
  }
  return {
    wte,
    wpe,
    layers,
    lnFW: ones(C),
    lnFB: new Float32Array(C),
    lmHead: config.tiedEmbeddings ? null : normal(config.vocabSize * C, std),
    sourceDtype: 'F32',
  };
}
