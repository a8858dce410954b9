/** `monosemantic generate` on the tiny fixture model: greedy, seeded sampling, SAE steering, errors. */
import path from 'node:path';

import { describe, expect, it } from 'vitest';

import { eosOptions, generatedText } from '../../lib/cli/generate.js';
import { Tokenizer } from '../../lib/lm/tokenizer.js';
import { packageRoot } from '../../lib/native/load.js';
import { saveSaeLens } from '../../lib/sae/saelens.js';
import { SparseAutoencoder } from '../../lib/sae/sae.js';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/run-fixtures.js';

const model = path.join(packageRoot(), 'test/fixtures/gpt2/tiny-gelu-new-tied');

const cli = (args: string[]) => runCli(args, { MONOSEMANTIC_BACKEND: 'cpu' });

describe('monosemantic generate', () => {
  it('continues a prompt greedily and, with a seed, reproducibly', () => {
    const a = cli(['generate', '--model', model, '--prompt', 'def f(x):', '--greedy', '-n', '6']);
    expect(a.status, a.stderr).toBe(0);
    expect(a.stdout.startsWith('def f(x):')).toBe(true);
    expect(a.stdout.length).toBeGreaterThan('def f(x):\n'.length);
    const s1 = cli(['generate', '--model', model, '--prompt', 'hello', '--seed', '3', '--top-p', '0.9', '-n', '6']);
    const s2 = cli(['generate', '--model', model, '--prompt', 'hello', '--seed', '3', '--top-p', '0.9', '-n', '6']);
    expect(s1.stdout).toBe(s2.stdout);
  });

  it('stops at the end-of-text token (not printed) unless --ignore-eos', async () => {
    // Model A emits its EOS (a document boundary) often; in this seeded sample, at new token 116.
    const args = ['generate', '--model', path.join(packageRoot(), 'models/a'), '--prompt', 'The end.', '-n', '200', '--seed', '0'];
    const stopped = cli(args);
    expect(stopped.status, stopped.stderr).toBe(0);
    expect(stopped.stdout).not.toContain('<|endoftext|>');
    const past = cli([...args, '--ignore-eos']);
    expect(past.status, past.stderr).toBe(0);
    // The same draws: the stopped text is the other up to its first EOS (all of it, had there been none).
    const eos = past.stdout.indexOf('<|endoftext|>');
    expect(stopped.stdout.trimEnd()).toBe((eos >= 0 ? past.stdout.slice(0, eos) : past.stdout).trimEnd());
    // The printed text leaves out only a final stop token.
    const tokenizer = await Tokenizer.load(path.join(packageRoot(), 'models/a'));
    const { stopTokens } = eosOptions(tokenizer, false);
    expect(stopTokens).toEqual([tokenizer.eosTokenId]);
    expect(eosOptions(tokenizer, true).stopTokens).toEqual([]);
    const hello = Array.from(tokenizer.encode(' hello'));
    expect(generatedText(tokenizer, [...hello, tokenizer.eosTokenId!], stopTokens)).toBe(' hello');
    expect(generatedText(tokenizer, hello, stopTokens)).toBe(' hello');
  });

  it('steers by clamping an SAE feature at the SAE’s hook', async () => {
    const dir = tempDir('steer');
    using sae = SparseAutoencoder.create({ dIn: 76, dSae: 24, seed: 5, backend: 'cpu' });
    await saveSaeLens(path.join(dir, 'sae'), {
      dIn: 76,
      dSae: 24,
      params: sae.readParameters(),
      metadata: { modelName: 'tiny-gelu-new-tied', hookName: 'blocks.0.mlp.hook_post', contextSize: 24, datasetPath: null },
    });
    const plain = cli(['generate', '--model', model, '--prompt', 'the', '--greedy', '-n', '10']);
    const steered = cli(['generate', '--model', model, '--prompt', 'the', '--greedy', '-n', '10', '--sae', path.join(dir, 'sae'), '--steer', '4=200']);
    expect(steered.status, steered.stderr).toBe(0);
    expect(steered.stdout).not.toBe(plain.stdout);
    const unsteered = cli(['generate', '--model', model, '--prompt', 'the', '--greedy', '-n', '10', '--sae', path.join(dir, 'sae')]);
    expect(unsteered.stdout).toBe(plain.stdout); // the error term is kept: no clamp, no change
  });

  it('explains bad arguments', () => {
    const r = cli(['generate', '--model', model, '--prompt', 'x', '--steer', '4=1']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/--steer needs --sae DIR/);
    const m = cli(['generate', '--model', path.join(packageRoot(), 'nowhere'), '--prompt', 'x']);
    expect(m.status).toBe(1);
    expect(m.stderr).toMatch(/^monosemantic: .*nowhere/m);
    const long = cli(['generate', '--model', model, '--prompt', 'x', '-n', '100']);
    expect(long.status).toBe(1);
    expect(long.stderr).toMatch(/n_positions 24/);
  });
});
