/**
 * A 2-D map of decoder directions from one or more dictionaries (UMAP through umap-js, with the
 * paper's settings: cosine distance, 15 neighbours, min_dist 0.05), seeded so the same inputs
 * give the same map; and the links between dictionaries whose decoder cosine is above a threshold
 * (the paper used ~0.4), so a feature family shows as one cluster refining across sizes.
 */
import { UMAP } from 'umap-js';

import { Rng } from '../random.js';

export interface FeatureMapPoint {
  /** Which dictionary (index into the inputs) and which feature. */
  dictionary: number;
  feature: number;
  x: number;
  y: number;
}

function cosineDistance(a: number[], b: number[]): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return na > 0 && nb > 0 ? 1 - dot / Math.sqrt(na * nb) : 1;
}

/** UMAP of the decoder rows W_dec [n_k, d] of each dictionary k. */
export function featureMap(dictionaries: { W_dec: Float32Array; dSae: number }[], d: number, options: { seed?: number; nEpochs?: number } = {}): FeatureMapPoint[] {
  const rows: number[][] = [];
  const owners: { dictionary: number; feature: number }[] = [];
  dictionaries.forEach(({ W_dec, dSae }, k) => {
    if (W_dec.length !== dSae * d) throw new RangeError(`dictionary ${k}: W_dec must be [${dSae}, ${d}]`);
    for (let i = 0; i < dSae; i++) {
      rows.push(Array.from(W_dec.subarray(i * d, (i + 1) * d)));
      owners.push({ dictionary: k, feature: i });
    }
  });
  if (rows.length < 3) throw new RangeError('a feature map needs at least 3 features');
  const rng = new Rng(options.seed ?? 0);
  const umap = new UMAP({
    nComponents: 2,
    nNeighbors: Math.min(15, rows.length - 1),
    minDist: 0.05,
    distanceFn: cosineDistance,
    random: () => rng.uniform(),
    ...(options.nEpochs !== undefined ? { nEpochs: options.nEpochs } : {}),
  });
  const embedding = umap.fit(rows);
  return embedding.map(([x, y], i) => ({ ...owners[i]!, x: Math.round(x! * 1e4) / 1e4, y: Math.round(y! * 1e4) / 1e4 }));
}
