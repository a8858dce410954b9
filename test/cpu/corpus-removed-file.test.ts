/**
 * A named text file removed during a run: the harvested-activation stream reopens the context
 * stream for each pass, and that pass skips the file (counting it) instead of ending the run; a
 * position saved in that pass still resumes exactly.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterAll, expect, it } from 'vitest';

import { openContextStream, type ContextStream, type ContextStreamState } from '../../lib/data/contexts.js';
import { LmActivationSource, type LmActivationState } from '../../lib/data/lm-activations.js';
import { Gpt2Model } from '../../lib/lm/model.js';
import { Tokenizer } from '../../lib/lm/tokenizer.js';
import { packageRoot } from '../../lib/native/load.js';
import { Tensor } from '../../lib/tensor.js';

const backend = 'cpu' as const;
const modelDir = path.join(packageRoot(), 'test/fixtures/gpt2/tiny-gelu-new-tied');
const T = 8;
const W = 36; // the width of blocks.0.hook_resid_post in the fixture model

/** Activations [count·T, W] whose row holds its token id and position (a fake harvest: no forward). */
async function tokenHarvest(ids: Int32Array, count: number): Promise<Tensor> {
  const out = new Float32Array(count * T * W);
  for (let r = 0; r < count * T; r++) {
    out[r * W] = ids[r]!;
    out[r * W + 1] = r % T;
  }
  return Tensor.from(out, [count * T, W], { backend });
}

let model: Gpt2Model | undefined;
let scratch: string | undefined;
afterAll(async () => {
  model?.dispose();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

it('skips a named file removed after the first pass when the next pass opens, and resumes exactly there', async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'monosemantic-removed-'));
  const jsonl = path.join(scratch, 'a.jsonl');
  const text = path.join(scratch, 'extra.txt');
  await writeFile(jsonl, Array.from({ length: 6 }, (_, i) => JSON.stringify({ text: `Document ${i} is about cats and dogs.` })).join('\n'));
  await writeFile(text, 'An extra text file that is removed during the run.');
  const tokenizer = await Tokenizer.load(modelDir);
  model = await Gpt2Model.load(modelDir, { backend });
  const opened: ContextStream[] = [];
  const open = (state?: LmActivationState) =>
    LmActivationSource.open({
      model: model!,
      hook: 'blocks.0.hook_resid_post',
      openContexts: async (s) => {
        const stream = await openContextStream({ paths: [jsonl, text] }, { tokenizer, contextLength: T, seed: 3, tokenizerThreads: 0, ...(s ? { state: s as ContextStreamState } : {}) });
        opened.push(stream);
        return stream;
      },
      contextLength: T,
      seed: 3,
      positionsPerContext: 2,
      contextsPerWindow: 1000, // one window holds a whole pass
      prefetch: false,
      harvest: tokenHarvest,
      ...(state ? { state } : {}),
    });
  const take = async (source: LmActivationSource, rows: number) => {
    using out = Tensor.empty([rows, W], { backend });
    await source.next(rows, out);
    return out.toArray() as Float32Array;
  };

  const source = await open();
  const firstPass = opened[0]!.state().contextsServed * 2; // the first window is the whole first pass
  expect(opened[0]!.report.skipped).toEqual([]);
  await take(source, firstPass);
  await rm(text);
  await take(source, 4); // into the second pass: the stream is reopened without the file
  expect(source.state().epoch).toBe(1);
  expect(opened).toHaveLength(2);
  expect(opened[1]!.report.skipped).toEqual([{ file: text, reason: expect.stringMatching(/^cannot be read \(ENOENT/) as string, count: 1 }]);
  const secondPass = opened[1]!.state().contextsServed * 2;
  expect(secondPass).toBeGreaterThan(0);
  expect(secondPass).toBeLessThan(firstPass);
  // The saved position names the second pass's corpus, which differs from the first's.
  const saved = source.state();
  expect((saved.contexts as ContextStreamState).fingerprint).not.toBe(opened[0]!.state().fingerprint);

  const continued = await take(source, secondPass);
  await source.close();
  const resumed = await open(saved);
  expect(Array.from(await take(resumed, secondPass))).toEqual(Array.from(continued));
  await resumed.close();
});
