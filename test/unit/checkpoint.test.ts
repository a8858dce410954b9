/** Checkpoint completeness: a trainer's layout (its files and state.json fields) is required when reading. */
import { cp, mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { CheckpointError, listCheckpoints, readCheckpoint, writeCheckpoint } from '../../lib/io/checkpoint.js';
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

  it('names a listed file that is missing, and one that a folder stands in for', async () => {
    for (const [i, [replace, message]] of ([[false, /optimizer\.safetensors is missing/], [true, /optimizer\.safetensors is not a file/]] as const).entries()) {
      const checkpoint = await writeCheckpoint(path.join(root, `gone-${i}`), 5, lmFiles(lmState), 9);
      await rm(path.join(checkpoint, 'optimizer.safetensors'));
      if (replace) await mkdir(path.join(checkpoint, 'optimizer.safetensors'));
      await expect(readCheckpoint(checkpoint, LM_CHECKPOINT_LAYOUT)).rejects.toThrow(message);
    }
  });

  it("refuses another trainer's checkpoint, naming the files this trainer writes", async () => {
    const lm = await writeCheckpoint(path.join(root, 'lm-for-sae'), 5, lmFiles(lmState), 9);
    await expect(readCheckpoint(lm, SAE_CHECKPOINT_LAYOUT)).rejects.toThrow(/sae_weights\.safetensors is not listed in manifest\.json \(an SAE trainer writes sae_weights\.safetensors, optimizer\.safetensors, firing\.safetensors, state\.json\)/);
  });
});

describe('writeCheckpoint', () => {
  const stateAt = (step: number, trainLoss: number) => ({ ...lmState, step, trainLoss });

  it('replaces a checkpoint of the same step, keeping the old one until the new one is in place', async () => {
    const dir = path.join(root, 'same-step');
    await writeCheckpoint(dir, 5, lmFiles(stateAt(5, 4.2)), 1);
    const again = await writeCheckpoint(dir, 5, lmFiles(stateAt(5, 3.9)), 1);
    expect((await readCheckpoint(again, LM_CHECKPOINT_LAYOUT)).state.trainLoss).toBe(3.9);
    expect(await readdir(dir)).toEqual(['step-000000005']);
  });

  it('after a crash between setting the old one aside and renaming the new one in, the old one is listed, read and put back', async () => {
    const dir = path.join(root, 'crashed-replacement');
    const first = await writeCheckpoint(dir, 5, lmFiles(stateAt(5, 4.2)), 1);
    // What the crash leaves: the old folder aside, the new one still temporary.
    await cp(first, `${first}.replaced`, { recursive: true });
    await rm(first, { recursive: true });
    await mkdir(`${first}.tmp-1234`);
    const listed = await listCheckpoints(dir);
    expect(listed.map((c) => c.step)).toEqual([5]);
    expect((await readCheckpoint(listed[0]!.path, LM_CHECKPOINT_LAYOUT)).state.trainLoss).toBe(4.2);
    // The next write settles it: the old one is back under its name before the new step is added.
    await writeCheckpoint(dir, 6, lmFiles(stateAt(6, 4.0)), 2);
    expect((await readdir(dir)).sort()).toEqual(['step-000000005', 'step-000000006']);
    expect((await readCheckpoint(path.join(dir, 'step-000000005'), LM_CHECKPOINT_LAYOUT)).state.trainLoss).toBe(4.2);
  });

  it('lists a step once when both its folder and an aside copy exist, and the next write deletes the copy', async () => {
    const dir = path.join(root, 'aside-and-final');
    const first = await writeCheckpoint(dir, 5, lmFiles(stateAt(5, 4.2)), 1);
    await cp(first, `${first}.replaced`, { recursive: true });
    expect(await listCheckpoints(dir)).toEqual([{ step: 5, path: first }]);
    await writeCheckpoint(dir, 7, lmFiles(stateAt(7, 4.0)), 2);
    expect((await readdir(dir)).sort()).toEqual(['step-000000005', 'step-000000007']);
  });
});
