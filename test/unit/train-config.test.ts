/** Training-config validation: defaults, unknown keys, bad values, cross-field rules. */
import { describe, expect, it } from 'vitest';

import { ConfigError, parseTrainConfig, setByPath, totalSteps } from '../../lib/sae/train-config.js';

const minimal = { data: { paths: ['acts/*.npy'] }, sae: { dSae: 4096 }, training: { totalSteps: 1000 } };

function issues(doc: unknown): string[] {
  try {
    parseTrainConfig(doc);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return [...(error as ConfigError).issues];
  }
  throw new Error('expected a ConfigError');
}

describe('parseTrainConfig', () => {
  it('fills in the documented defaults, the paper recipe included', () => {
    const c = parseTrainConfig(minimal);
    expect(c.training).toMatchObject({ batchSize: 4096, lr: 1e-4, beta1: 0.9, beta2: 0.999, l1Coeff: 5, lrDecay: 'constant', clipGradNorm: 0 });
    expect(c.resampling).toEqual({ enabled: true, steps: [25_000, 50_000, 75_000, 100_000], deadWindowSteps: 12_500, samples: 819_200, encoderNormFactor: 0.2, lrRewarmupSteps: 0 });
    expect(c.normalization).toEqual({ enabled: true, batches: 16 });
    expect(c.sae.penalty).toBe('l1');
    expect(totalSteps(c)).toBe(1000);
    expect(totalSteps(parseTrainConfig({ ...minimal, training: { totalSamples: 10_000, batchSize: 4096 } }))).toBe(3);
  });

  it('rejects unknown keys, naming them and where they are', () => {
    expect(issues({ ...minimal, extra: 1 })).toEqual(["(root): unknown key 'extra'"]);
    expect(issues({ ...minimal, training: { totalSteps: 10, learningRate: 1 } })).toEqual(["training: unknown key 'learningRate'"]);
  });

  it('names the field and the allowed values for bad enums and numbers', () => {
    expect(issues({ ...minimal, sae: { dSae: 16, penalty: 'l2' } })).toEqual(['sae.penalty: must be one of "l1", "l1_decnorm"']);
    const bad = issues({ ...minimal, sae: { dSae: -3 }, training: { totalSteps: 1, lr: 'fast' } });
    expect(bad.some((m) => m.startsWith('sae.dSae:'))).toBe(true);
    expect(bad.some((m) => m.startsWith('training.lr:'))).toBe(true);
    expect(issues({ ...minimal, data: {} })[0]).toMatch(/^data\.paths:/);
  });

  it('requires exactly one of totalSteps and totalSamples', () => {
    expect(issues({ ...minimal, training: {} })).toEqual(['training: give exactly one of totalSteps and totalSamples']);
    expect(issues({ ...minimal, training: { totalSteps: 1, totalSamples: 5 } })).toEqual(['training: give exactly one of totalSteps and totalSamples']);
  });

  it('asks for resampling to be off with the April-2024 penalty', () => {
    expect(issues({ ...minimal, sae: { dSae: 8, penalty: 'l1_decnorm' } })[0]).toMatch(/^resampling\.enabled:/);
    expect(parseTrainConfig({ ...minimal, sae: { dSae: 8, penalty: 'l1_decnorm' }, resampling: { enabled: false } }).resampling.enabled).toBe(false);
  });

  it('sorts resample steps and rejects duplicates', () => {
    expect(parseTrainConfig({ ...minimal, resampling: { steps: [30, 10] } }).resampling.steps).toEqual([10, 30]);
    expect(issues({ ...minimal, resampling: { steps: [10, 10] } })).toEqual(['resampling.steps: steps must be distinct']);
  });
});

describe('setByPath', () => {
  it('creates nested objects for CLI overrides', () => {
    const doc: Record<string, unknown> = { training: { lr: 1 } };
    setByPath(doc, 'training.lr', 3e-4);
    setByPath(doc, 'resampling.steps', [5]);
    expect(doc).toEqual({ training: { lr: 3e-4 }, resampling: { steps: [5] } });
  });
});
