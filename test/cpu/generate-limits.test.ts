/**
 * generate's vocabularyLimit (a model whose embedding is padded past its tokenizer's vocabulary
 * never yields an id the tokenizer cannot decode) and its stop tokens (an Int32Array is taken; an
 * id outside the vocabulary is refused).
 */
import { expect, it } from 'vitest';

import { eosOptions } from '../../lib/cli/generate.js';
import { shippedModelDir } from '../../lib/lm/default-model.js';
import { generate } from '../../lib/lm/generate.js';
import { Gpt2Model } from '../../lib/lm/model.js';
import { Tokenizer } from '../../lib/lm/tokenizer.js';

it('picks only ids below the limit, and takes stop tokens as an Int32Array', async () => {
  using model = await Gpt2Model.load(shippedModelDir('a'), { backend: 'cpu' });
  const prompt = Int32Array.of(8191, 300, 301);
  const tokens = await generate(model, prompt, { maxNewTokens: 12, seed: 4, vocabularyLimit: 97 });
  expect(tokens.length).toBe(12);
  expect(Array.from(tokens).every((t) => t < 97)).toBe(true);
  const greedy = await generate(model, prompt, { maxNewTokens: 4, greedy: true, stopTokens: Int32Array.of(8191) });
  expect(greedy.length).toBeGreaterThan(0);
  await expect(generate(model, prompt, { maxNewTokens: 2, stopTokens: [9000] })).rejects.toThrow(/stop token 9000 is outside the vocabulary \[0, 8192\)/);
  await expect(generate(model, prompt, { maxNewTokens: 2, vocabularyLimit: 9000 })).rejects.toThrow(/vocabularyLimit must be an integer in \[1, 8192\]/);
});

it('limits the ids to the tokenizer’s vocabulary only where the model has more', async () => {
  const tokenizer = await Tokenizer.load(shippedModelDir('a'));
  expect(eosOptions(tokenizer, false, 8192)).toEqual({ stopTokens: [8191] });
  expect(eosOptions(tokenizer, false, 8256)).toEqual({ stopTokens: [8191], vocabularyLimit: 8192 });
});
