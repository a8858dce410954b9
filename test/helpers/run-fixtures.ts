/** Activation files and training configs for trainer tests, in a fresh temporary folder. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { encodeNpy } from '../../lib/io/npy.js';
import { parseTrainConfig, type TrainConfig, type TrainConfigInput } from '../../lib/sae/train-config.js';
import { PlantedDictionary } from './planted.js';

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `monosemantic-${prefix}-`));
}

/** Writes `files` .npy files of planted-dictionary samples [rowsPerFile, d]; returns the folder. */
export function writePlantedActivations(dir: string, options: { atoms: number; d: number; files: number; rowsPerFile: number; seed: number }): PlantedDictionary {
  const planted = new PlantedDictionary(options.atoms, options.d, options.seed);
  for (let f = 0; f < options.files; f++) {
    writeFileSync(path.join(dir, `acts-${f}.npy`), encodeNpy(planted.sample(options.rowsPerFile), [options.rowsPerFile, options.d]));
  }
  return planted;
}

/** A validated config over `dataDir`, with `overrides` merged one level deep. */
export function testConfig(dataDir: string, outDir: string, overrides: Partial<Record<Exclude<keyof TrainConfigInput, 'seed'>, object>> & { seed?: number } = {}): TrainConfig {
  const base: Record<string, Record<string, unknown>> = {
    data: { paths: [dataDir], chunkRows: 64, bufferChunks: 8 },
    sae: { dSae: 64, geometricMedianSamples: 128 },
    training: { batchSize: 64, totalSteps: 100, lr: 3e-3, l1Coeff: 1 },
    logging: { every: 10, densityWindowSamples: 1280 },
    checkpoints: { every: 30, keep: 3 },
    normalization: { batches: 2 },
    resampling: { enabled: false },
  };
  const doc: Record<string, unknown> = { outDir, backend: 'cpu', seed: overrides.seed ?? 0 };
  for (const [key, value] of Object.entries(base)) doc[key] = { ...value, ...((overrides as Record<string, object>)[key] ?? {}) };
  return parseTrainConfig(doc);
}
