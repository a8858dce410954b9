/** Checkpoint completeness: a trainer's layout (its files and state.json fields) is required when reading. */
import { rm } from 'node:fs/promises';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { CheckpointError, readCheckpoint, writeCheckpoint } from '../../lib/io/checkpoint.js';
import { LM_CHECKPOINT_LAYOUT } from '../../lib/lm/lm-trainer.js';
import { SAE_CHECKPOINT_LAYOUT } from '../../lib/sae/trainer.js';
import { tempDir } from '../helpers/run-fixtures.js';

const root = tempDir('checkpoint');
afterAll(() => rm(root, { recursive: true, force: true }));

/** What lib/lm/lm-trainer.ts writes, with placeholder tensors (reading does not decode them). */
const lmState = { step: 5, tokens: 640, source: { version: 1, seed: 0, epoch: 0, index: 5, contextsServed: 5, fingerprint: 'f' }, seconds: 1.5, valLoss: null, trainLoss: 4.2, window: { sum: 0, steps: 0 } };
const lmFiles = (state: object) => ({ 'weights.safetensors': Buffer.from('w'), 'optimizer.safetensors': Buffer.from('o'), 'state.json': JSON.stringify(state) });

describe('readCheckpoint', () => {
  it("accepts a language-model trainer's complete checkpoint and refuses incomplete ones", async () => {
    const good = await writeCheckpoint(path.join(root, 'lm'), 5, lmFiles(lmState), 9);
    const read = await readCheckpoint(good, LM_CHECKPOINT_LAYOUT);
    expect(read.step).toBe(5);
    expect(read.state).toEqual(lmState);

    const noSource: Record<string, unknown> = { ...lmState };
    delete noSource.source;
    const cases: [Record<string, Buffer | string>, RegExp][] = [
      [lmFiles(noSource), /state\.json: source: /],
      [lmFiles({ ...lmState, window: { sum: 0 } }), /state\.json: window\.steps: /],
      [{ ...lmFiles(lmState), 'state.json': '{"step": 5' }, /state\.json is not valid JSON/],
      [{ 'weights.safetensors': Buffer.from('w'), 'state.json': JSON.stringify(lmState) }, /optimizer\.safetensors is not listed in manifest\.json \(a language-model trainer writes weights\.safetensors, optimizer\.safetensors, state\.json\)/],
      [{ 'optimizer.safetensors': Buffer.from('o'), 'state.json': JSON.stringify(lmState) }, /weights\.safetensors is not listed in manifest\.json/],
    ];
    for (const [i, [files, message]] of cases.entries()) {
      const checkpoint = await writeCheckpoint(path.join(root, `bad-${i}`), 5, files, 9);
      const error: unknown = await readCheckpoint(checkpoint, LM_CHECKPOINT_LAYOUT).catch((e: unknown) => e);
      expect(error, String(message)).toBeInstanceOf(CheckpointError);
      expect((error as Error).message).toMatch(message);
    }
  });

  it("refuses another trainer's checkpoint, naming the files this trainer writes", async () => {
    const lm = await writeCheckpoint(path.join(root, 'lm-for-sae'), 5, lmFiles(lmState), 9);
    await expect(readCheckpoint(lm, SAE_CHECKPOINT_LAYOUT)).rejects.toThrow(/sae_weights\.safetensors is not listed in manifest\.json \(an SAE trainer writes sae_weights\.safetensors, optimizer\.safetensors, firing\.safetensors, state\.json\)/);
  });
});
