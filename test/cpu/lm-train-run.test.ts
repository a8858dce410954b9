/**
 * `monosemantic lm train` on the package's corpus: a tiny model's loss falls on real text, the
 * exported HF folder loads and computes the trainer's loss, a resumed run is bit-identical to an
 * uninterrupted one, and bad configs are refused with messages naming the field.
 */
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { openShardContextStream } from '../../lib/data/shard-contexts.js';
import { readSafetensorsHeader } from '../../lib/io/safetensors.js';
import { trainLm, type LmTrainSummary } from '../../lib/lm/lm-trainer.js';
import { nextTokenTargets } from '../../lib/lm/tokens.js';
import { Gpt2Model } from '../../lib/lm/model.js';
import { type LmTrainConfigInput, parseLmTrainConfig } from '../../lib/lm/train-config.js';
import { readMetrics } from '../../lib/sae/metrics-log.js';
import { packageRoot } from '../../lib/native/load.js';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/run-fixtures.js';

const corpus = path.join(packageRoot(), 'corpus');
let root = '';

/** A small model on the real corpus sample: CI-sized, but large enough to learn. */
function tinyConfig(outDir: string, overrides: Partial<LmTrainConfigInput> = {}): LmTrainConfigInput {
  return {
    outDir,
    backend: 'cpu',
    seed: 3,
    model: { nLayer: 1, nHead: 2, dModel: 32, dMlp: 64, contextLength: 33 },
    training: { batchSize: 16, totalSteps: 300, lr: 1e-2, warmupSteps: 20 },
    eval: { every: 100, maxBatches: 4 },
    logging: { every: 10 },
    checkpoints: { every: 0, keep: 2 },
    ...overrides,
  };
}

beforeAll(() => {
  root = tempDir('lm-train');
});

describe('trainLm', () => {
  let summary: LmTrainSummary;
  beforeAll(async () => {
    summary = await trainLm(parseLmTrainConfig(tinyConfig(path.join(root, 'learn'))));
  }, 120_000);

  it('lowers the validation loss on real corpus text well below the uniform and unigram levels', async () => {
    const records = await readMetrics(path.join(summary.outDir, 'metrics.jsonl'));
    const val = records.filter((r) => typeof r.valLoss === 'number').map((r) => r.valLoss as number);
    expect(val.length).toBe(4); // steps 0, 100, 200, 300
    expect(val[0]).toBeCloseTo(Math.log(8192), 0); // a fresh model is near uniform over the vocabulary
    // The corpus sample's unigram cross-entropy is 7.12 nats (corpus/README.md).
    expect(summary.valLoss!).toBeLessThan(7.0);
    expect(val[3]!).toBeLessThan(val[1]!);
    expect(summary.steps).toBe(300);
    expect(summary.tokens).toBe(300 * 16 * 32);
  });

  it('exports an HF GPT-2 folder (bf16) that computes the loss the trainer reported', async () => {
    const dir = summary.modelDir!;
    const header = await readSafetensorsHeader(path.join(dir, 'model.safetensors'));
    expect(header.tensors['transformer.wte.weight']!.dtype).toBe('BF16');
    expect(readFileSync(path.join(dir, 'README.md'), 'utf8')).toMatch(/final validation loss \| \d\.\d{4} nats\/token/);
    expect(JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'))).toMatchObject({ dtype: 'bfloat16', torch_dtype: 'bfloat16' });
    expect(readFileSync(path.join(dir, 'loss-curve.svg'), 'utf8')).toMatch(/^<svg/);
    // The validation contexts the run used (4 batches of 16) through the exported model.
    using model = await Gpt2Model.load(dir, { backend: 'cpu' });
    const stream = await openShardContextStream({ paths: [path.join(corpus, 'val.tokens')], contextLength: 33, seed: 3, bosTokenId: 8191, epochs: 1 });
    let sum = 0;
    let count = 0;
    for (let b = 0; b < 4; b++) {
      const ids = (await stream.next(16))!;
      const { loss } = await model.forward(ids, 16, { loss: true });
      sum += loss!.mean * loss!.perToken.length;
      count += loss!.perToken.length;
    }
    await stream.close();
    // bf16 rounding of the weights moves the loss slightly.
    expect(Math.abs(sum / count - summary.valLoss!)).toBeLessThan(0.02);
  });
});

describe('resume', () => {
  it('an interrupted and resumed run ends bit-identical to an uninterrupted one', async () => {
    const base = { training: { batchSize: 4, totalSteps: 24, lr: 5e-3, warmupSteps: 4 }, eval: { every: 8, maxBatches: 2 }, logging: { every: 4 } };
    const whole = await trainLm(parseLmTrainConfig(tinyConfig(path.join(root, 'whole'), base)));
    const outDir = path.join(root, 'split');
    const controller = new AbortController();
    const first = await trainLm(parseLmTrainConfig(tinyConfig(outDir, base)), {
      command: 'monosemantic lm train --seed 3 -o split',
      signal: controller.signal,
      makeProgress: () => ({ update: (done) => done === 11 && controller.abort(), log: () => {}, stop: () => {} }),
    });
    expect(first.interrupted).toBe(true);
    expect(first.steps).toBe(11);
    expect(first.modelDir).toBeNull();
    const resumed = await trainLm(parseLmTrainConfig(tinyConfig(outDir, base)), { resume: true, command: 'monosemantic lm train --resume split' });
    expect(resumed.steps).toBe(24);
    // The model card names the command that started the run and the one that resumed it.
    expect(readFileSync(path.join(resumed.modelDir!, 'README.md'), 'utf8')).toContain(
      '| command | `monosemantic lm train --seed 3 -o split`, then resumed with `monosemantic lm train --resume split` |',
    );
    const weights = (s: LmTrainSummary) => readFileSync(path.join(s.checkpoint!, 'weights.safetensors'));
    expect(weights(resumed).equals(weights(whole))).toBe(true);
    expect(readFileSync(path.join(resumed.checkpoint!, 'optimizer.safetensors')).equals(readFileSync(path.join(whole.checkpoint!, 'optimizer.safetensors')))).toBe(true);
    const losses = async (dir: string) => (await readMetrics(path.join(dir, 'metrics.jsonl'))).map((r) => [r.step, r.loss ?? null, r.valLoss ?? null]);
    expect(await losses(outDir)).toEqual(await losses(whole.outDir));
    await expect(trainLm(parseLmTrainConfig(tinyConfig(outDir, base)))).rejects.toThrow(/already holds a run; resume it/);
    const shorter = { ...base, training: { ...base.training, totalSteps: 10 } };
    await expect(trainLm(parseLmTrainConfig(tinyConfig(outDir, shorter)), { resume: true })).rejects.toThrow(
      /the checkpoint is at step 24, past the run's 10 steps: give at least 24 steps to resume it/,
    );

    // Resuming the finished run again adds nothing: no validation, metrics record or checkpoint; the model is exported again.
    const metricsBefore = readFileSync(path.join(outDir, 'metrics.jsonl'), 'utf8');
    const log: string[] = [];
    const again = await trainLm(parseLmTrainConfig(tinyConfig(outDir, base)), { resume: true, log: (l) => log.push(l) });
    expect(again).toMatchObject({ steps: 24, interrupted: false, checkpoint: resumed.checkpoint, valLoss: resumed.valLoss });
    expect(log).toContainEqual('the run had already finished at step 24 of 24; exporting its model again');
    expect(readFileSync(path.join(outDir, 'metrics.jsonl'), 'utf8')).toBe(metricsBefore);
    expect(weights(again).equals(weights(whole))).toBe(true);

    // Stopped after its last step, a run still finishes with its final validation. (Metrics every 5
    // steps: the last record covers steps 21 to 24; the model card's training loss averages all 24,
    // fewer than the card's 100.)
    const late = path.join(root, 'stopped-at-end');
    const lateController = new AbortController();
    const atEnd = await trainLm(parseLmTrainConfig(tinyConfig(late, { ...base, logging: { every: 5 } })), {
      signal: lateController.signal,
      makeProgress: () => ({ update: (done) => done === 24 && lateController.abort(), log: () => {}, stop: () => {} }),
    });
    expect(atEnd).toMatchObject({ interrupted: false, steps: 24, valLoss: whole.valLoss });
    expect((await readMetrics(path.join(late, 'metrics.jsonl'))).filter((r) => r.valLoss !== undefined).map((r) => r.step)).toEqual([0, 8, 16, 24]);
    const logged = (await readMetrics(path.join(late, 'metrics.jsonl'))).filter((r) => typeof r.loss === 'number');
    const meanLoss = logged.reduce((sum, r, i) => sum + (r.loss as number) * (r.step - (i > 0 ? logged[i - 1]!.step : 0)), 0) / 24;
    expect(readFileSync(path.join(atEnd.modelDir!, 'README.md'), 'utf8')).toContain(`| final training loss | ${meanLoss.toFixed(4)} nats/token (mean of the last 24 steps) |`);
    expect(atEnd.recentTrainLoss!.steps).toBe(24); // the summary's, as the card's
    expect(atEnd.recentTrainLoss!.loss).toBeCloseTo(meanLoss, 12);
  }, 120_000);
});

describe('starting a run', () => {
  it('over a start that failed before its first checkpoint, logs step 0 once; refuses a folder of other files', async () => {
    const base = { training: { batchSize: 4, totalSteps: 4, lr: 5e-3, warmupSteps: 1 }, eval: { every: 4, maxBatches: 1 }, logging: { every: 2 } };
    const outDir = path.join(root, 'failed-start');
    const controller = new AbortController();
    // Stopped during step 1, before any checkpoint (checkpoints.every 0: only at the end).
    const first = await trainLm(parseLmTrainConfig(tinyConfig(outDir, base)), {
      signal: controller.signal,
      makeProgress: () => ({ update: (done) => done === 1 && controller.abort(), log: () => {}, stop: () => {} }),
    });
    expect(first.interrupted).toBe(true);
    rmSync(path.join(outDir, 'checkpoints'), { recursive: true }); // as if it was killed before its checkpoint
    await trainLm(parseLmTrainConfig(tinyConfig(outDir, base)));
    const validated = (await readMetrics(path.join(outDir, 'metrics.jsonl'))).filter((r) => r.valLoss !== undefined).map((r) => r.step);
    expect(validated).toEqual([0, 4]);

    const model = path.join(root, 'model-folder');
    cpSync(path.join(packageRoot(), 'models', 'a'), model, { recursive: true });
    const before = readFileSync(path.join(model, 'config.json'), 'utf8');
    await expect(trainLm(parseLmTrainConfig(tinyConfig(model, base)))).rejects.toThrow(/is not empty and holds no monosemantic run \(.*config\.json.*\): a run would replace files there/);
    expect(readFileSync(path.join(model, 'config.json'), 'utf8')).toBe(before);
  }, 60_000);
});

describe('config and CLI', () => {
  it('a damaged training or validation shard is named before anything trains on it', async () => {
    const good = readFileSync(path.join(corpus, 'val.tokens'));
    const flipped = Buffer.from(good);
    flipped[64 + 1400]! ^= 0x10; // one token's bits, past the header: only the checksum sees it
    const damaged = path.join(root, 'damaged.tokens');
    writeFileSync(damaged, flipped);
    const base = { training: { batchSize: 4, totalSteps: 4, lr: 5e-3, warmupSteps: 1 }, eval: { every: 2, maxBatches: 1 } };
    await expect(trainLm(parseLmTrainConfig(tinyConfig(path.join(root, 'bad-train'), { ...base, data: { train: [damaged], val: null } })))).rejects.toThrow(
      new RegExp(`${damaged}: .*checksum`),
    );
    await expect(
      trainLm(parseLmTrainConfig(tinyConfig(path.join(root, 'bad-val'), { ...base, data: { train: [path.join(corpus, 'val.tokens')], val: [damaged] } }))),
    ).rejects.toThrow(new RegExp(`${damaged}: .*checksum`));
  });

  it('refuses bad configs, naming the field', () => {
    expect(() => parseLmTrainConfig({ training: { totalSteps: 5 }, model: { dModel: 30, nHead: 4 } })).toThrow(/model.nHead: 4 does not divide model.dModel 30/);
    expect(() => parseLmTrainConfig({ training: { totalSteps: 5, totalTokens: 9 } })).toThrow(/exactly one of totalSteps and totalTokens/);
    expect(() => parseLmTrainConfig({ training: { totalSteps: 5 }, model: { layers: 2 } })).toThrow(/model: unknown key 'layers'/);
    expect(() => parseLmTrainConfig({ training: { totalSteps: 5 }, model: { activation: 'swish' } })).toThrow(/model.activation: must be one of "relu", "gelu_new", "gelu"/);
    expect(() => parseLmTrainConfig({ training: { totalSteps: 5, eps: 1e-50 } })).toThrow(/training.eps: /);
    expect(() => parseLmTrainConfig({ training: { totalSteps: 5, lr: 0.1, weightDecay: 10 } })).toThrow(/training.weightDecay: lr × weightDecay = 1 must be below 1/);
  });

  it('targets are the next token of each context, none at the last position', () => {
    expect(Array.from(nextTokenTargets(Int32Array.from([1, 2, 3, 4, 5, 6]), 2, 3))).toEqual([2, 3, -1, 5, 6, -1]);
  });

  it('`lm train` prints its config, trains, and reports config errors as one line', () => {
    const env = { MONOSEMANTIC_BACKEND: 'cpu' };
    const printed = runCli(['lm', 'train', '--print-config', '--steps', '7'], env);
    expect(printed.status, printed.stderr).toBe(0);
    expect(JSON.parse(printed.stdout)).toMatchObject({ model: { nLayer: 1, dModel: 128, dMlp: 512, activation: 'relu' }, training: { totalSteps: 7 } });
    const out = path.join(root, 'cli');
    const run = runCli(['lm', 'train', '-o', out, '--steps', '6', '--seed', '1', '--set', 'model.dModel=16', '--set', 'model.dMlp=32', '--set', 'model.contextLength=17', '--set', 'training.batchSize=2', '--set', 'eval.maxBatches=1', '--no-progress'], env);
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/finished after 6 of 6 steps \(192 tokens/);
    expect(run.stderr).toContain("warning: training.warmupSteps (100) is not below the run's 6 steps: the learning rate never leaves its warm-up");
    const card = readFileSync(path.join(out, 'model', 'README.md'), 'utf8');
    expect(card).toContain('`monosemantic lm train -o');
    expect(card).toMatch(/\| context \| 17 tokens \(the first is `<\|endoftext\|>`, id \d+\) \|/);
    const elsewhere = runCli(['lm', 'train', '--resume', out, '-o', path.join(root, 'elsewhere')], env);
    expect(elsewhere.stderr).toBe(`monosemantic: --out cannot be given with --resume: the run continues in its own folder (${out})\n`);
    const bad = runCli(['lm', 'train', '-o', path.join(root, 'bad'), '--set', 'training.lr=-1'], env);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/monosemantic: invalid training config \(flags\):\n\s+training.lr: /);
  });
});
