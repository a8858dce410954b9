/**
 * The analysis commands choose the model an SAE names and check what they are given before their
 * pass: the model from cfg.json's model_name (the package's a or b), a note when --model differs,
 * the hook's width, logit weights only where W_out reads the SAE's space, non-finite weights, a
 * feature that never fires, and flag values (a blank one is not 0).
 */
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { logitWeightLayer } from '../../lib/analysis/logit-weights.js';
import { encodeSafetensors } from '../../lib/io/safetensors.js';
import { parseSteer } from '../../lib/cli/generate.js';
import { saeModelDir } from '../../lib/cli/sae-model.js';
import { shippedModelDir } from '../../lib/lm/default-model.js';
import { packageRoot } from '../../lib/native/load.js';
import { loadSaeLens, saveSaeLens } from '../../lib/sae/saelens.js';
import { runCli } from '../helpers/cli.js';

const tiny = path.join(packageRoot(), 'test/fixtures/gpt2/tiny-gelu-new-tied'); // blocks.0.mlp.hook_post is 76 wide, the residual stream 36
const cli = (args: string[]) => runCli(args, { MONOSEMANTIC_BACKEND: 'cpu' });
let root: string;
let corpus: string;

/** An SAE of `dSae` features reading `dIn`-wide activations of `modelName`'s `hook`. */
async function saveSae(dir: string, o: { dIn: number; dSae: number; modelName: string | null; hook?: string | null; bEnc?: number; nanAt?: number }): Promise<string> {
  let s = 7;
  const values = (n: number) => Float32Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 0.5);
  const params = { W_enc: values(o.dIn * o.dSae), b_enc: new Float32Array(o.dSae).fill(o.bEnc ?? 0), W_dec: values(o.dSae * o.dIn), b_dec: new Float32Array(o.dIn) };
  await saveSaeLens(dir, {
    dIn: o.dIn,
    dSae: o.dSae,
    params,
    metadata: { modelName: o.modelName, hookName: o.hook === undefined ? 'blocks.0.mlp.hook_post' : o.hook, contextSize: 24, datasetPath: null },
  });
  if (o.nanAt !== undefined) {
    // saveSaeLens refuses non-finite weights: the damaged file is written over the saved one.
    params.W_dec[o.nanAt] = Number.NaN;
    const shapes = { W_enc: [o.dIn, o.dSae], b_enc: [o.dSae], W_dec: [o.dSae, o.dIn], b_dec: [o.dIn] };
    const tensors = Object.fromEntries(Object.entries(shapes).map(([name, shape]) => [name, { dtype: 'F32' as const, shape, data: params[name as keyof typeof params] }]));
    writeFileSync(path.join(dir, 'sae_weights.safetensors'), encodeSafetensors(tensors));
  }
  return dir;
}

beforeAll(() => {
  root = mkdtempSync(path.join(os.tmpdir(), 'monosemantic-analysis-checks-'));
  corpus = path.join(root, 'corpus.txt');
  writeFileSync(corpus, Array.from({ length: 40 }, (_, i) => `line ${i}: the cat sat on the mat, x = ${i * 7}; def f(x): return x`).join('\n'));
});

describe('the model an SAE is analysed with', () => {
  it("is the package's model its cfg.json names, --model when given (with a note when its name differs), and refused when unknown", () => {
    const notes: string[] = [];
    const note = (line: string) => notes.push(line);
    expect(saeModelDir('s', 'b', undefined, '--model', note)).toBe(shippedModelDir('b'));
    expect(saeModelDir('s', 'a', undefined, '--model', note)).toBe(shippedModelDir('a'));
    expect(saeModelDir('s', null, undefined, '--model', note)).toBe(shippedModelDir('a'));
    expect(saeModelDir('s', 'b', '/m/b', '--model', note)).toBe('/m/b');
    expect(notes).toEqual([]);
    expect(saeModelDir('s', 'b', '/m/a', '--model-b', note)).toBe('/m/a');
    expect(notes).toEqual(["note: s was trained on model 'b' (its cfg.json model_name); running it on --model-b /m/a"]);
    expect(() => saeModelDir('s', 'gpt2', undefined, '--model', note)).toThrow(/s was trained on model 'gpt2' .*: give its folder with --model$/);
  });

  it('eval of an SAE of model B runs on model B without being told', async () => {
    const sae = await saveSae(path.join(root, 'of-b'), { dIn: 512, dSae: 16, modelName: 'b' });
    const r = cli(['eval', '--sae', sae, '--contexts', '1', '--context-length', '8', '--json']);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).model).toBe(shippedModelDir('b'));
    const unknown = await saveSae(path.join(root, 'of-gpt2'), { dIn: 76, dSae: 16, modelName: 'gpt2' });
    const refused = cli(['eval', '--sae', unknown, '--contexts', '1']);
    expect(refused.stderr).toMatch(/was trained on model 'gpt2' \(its cfg\.json model_name\), which is not one of the package's \(a, b\): give its folder with --model\n$/);
  });
});

describe('checks before the pass', () => {
  it("refuses a hook narrower or wider than the SAE's input, naming both", async () => {
    const sae = await saveSae(path.join(root, 'mlp'), { dIn: 76, dSae: 16, modelName: 'tiny-gelu-new-tied' });
    const r = cli(['features', '--sae', sae, '--model', tiny, '--data', corpus, '--contexts', '2', '--hook', 'blocks.0.hook_resid_post', '-o', path.join(root, 'f')]);
    expect(r.stderr).toBe('monosemantic: the SAE reads 76-wide activations but blocks.0.hook_resid_post is 36 wide\n');
  });

  it('refuses an SAE whose weights are not finite, naming the tensor and element', async () => {
    const sae = await saveSae(path.join(root, 'nan'), { dIn: 76, dSae: 16, modelName: null, nanAt: 5 });
    await expect(loadSaeLens(sae)).rejects.toThrow(/W_dec: element 5 is NaN: the weights are not finite/);
  });

  it('steer --value max refuses a feature that never fired, since pinning it to 0 would change nothing', async () => {
    const sae = await saveSae(path.join(root, 'dead'), { dIn: 76, dSae: 16, modelName: 'tiny-gelu-new-tied', bEnc: -1000 });
    const r = cli(['steer', '--sae', sae, '--model', tiny, '--data', corpus, '--feature', '3', '--prompt', 'ab', '-n', '2']);
    expect(r.stderr).toMatch(/^monosemantic: feature 3 did not fire on the \d+ held-out contexts, so --value max would pin it to 0 and change nothing; give a value \(--value V\)\n$/);
    const badK = cli(['steer', '--sae', sae, '--model', tiny, '--data', corpus, '--feature', '3', '--value', 'max*.', '--prompt', 'ab', '-n', '2']);
    expect(badK.stderr).toBe('monosemantic: --value max*K: K must be a number (got ".")\n');
  });

  it('flag values: a blank number is not 0, --max-length is at least 1, --context-length at least 3', async () => {
    const sae = await saveSae(path.join(root, 'flags'), { dIn: 76, dSae: 16, modelName: 'tiny-gelu-new-tied' });
    const base = ['--model', tiny, '--data', corpus, '--contexts', '2'];
    expect(cli(['compare', '--sae-a', sae, '--sae-b', sae, '--model-a', tiny, '--link-threshold', '']).stderr).toBe('monosemantic: --link-threshold must be a number (got "")\n');
    expect(cli(['automata', '--sae', sae, ...base, '--max-length', '0']).stderr).toBe('monosemantic: --max-length must be a positive integer (got "0")\n');
    expect(cli(['automata', '--sae', sae, ...base, '--top', '0']).stderr).toBe('monosemantic: --top must be a positive integer (got "0")\n');
    expect(cli(['eval', '--sae', sae, ...base, '--context-length', '2']).stderr).toBe("monosemantic: --context-length must be in [3, 24], the model's n_positions (got 2)\n");
    expect(cli(['features', '--sae', sae, '--model', tiny, '--contexts', '', '-o', path.join(root, 'f2')]).stderr).toBe('monosemantic: --contexts must be a positive integer (got "")\n');
    expect(parseSteer(['5=1e+5', '2=-0.5'])).toEqual({ 5: 1e5, 2: -0.5 });
    expect(() => parseSteer(['5=.'])).toThrow('--steer 5=.: VALUE must be a number (got ".")');
  });

  it("browse refuses --sae of another run than --run's", async () => {
    const run = path.join(root, 'run');
    await saveSae(path.join(run, 'sae'), { dIn: 76, dSae: 16, modelName: 'tiny-gelu-new-tied' });
    const other = await saveSae(path.join(root, 'other'), { dIn: 76, dSae: 8, modelName: 'tiny-gelu-new-tied' });
    const r = cli(['browse', '--run', run, '--sae', other, '--model', tiny, '-o', path.join(root, 'site')]);
    expect(r.stderr).toMatch(/^monosemantic: --sae .* is not the SAE of --run .*: the run's overview would describe another SAE; give one of them\n$/);
    expect(cli(['browse', '--run', run, '--sae', path.join(run, 'sae'), '--model', tiny, '--data', corpus, '--contexts', '2', '--no-progress', '-o', path.join(root, 'site')]).status).toBe(0);
    // A damaged summary.json is named before the statistics pass, in one line.
    writeFileSync(path.join(run, 'summary.json'), '{bad');
    const damaged = cli(['browse', '--run', run, '--model', tiny, '--data', corpus, '--contexts', '2', '--no-progress', '-o', path.join(root, 'site2')]);
    expect(damaged.status).toBe(1);
    expect(damaged.stderr).toMatch(new RegExp(`^monosemantic: --run: ${path.join(run, 'summary.json')} is not valid JSON \\(.*\\); it is the run's summary, written when the run finishes\n$`));
    expect(existsSync(path.join(root, 'site2', 'data'))).toBe(false);
  });
});

describe('what every analysis command takes', () => {
  it('--hook for an SAE whose cfg.json names none, --text-field of a JSONL corpus, --context-length', async () => {
    const sae = await saveSae(path.join(root, 'no-hook'), { dIn: 76, dSae: 16, modelName: 'tiny-gelu-new-tied', hook: null });
    const jsonl = path.join(root, 'docs.jsonl');
    writeFileSync(jsonl, Array.from({ length: 30 }, (_, i) => JSON.stringify({ body: `doc ${i}: the cat sat on the mat, x = ${i}; def f(x): return x * ${i}` })).join('\n'));
    const common = ['--model', tiny, '--data', jsonl, '--text-field', 'body', '--contexts', '3', '--context-length', '8'];
    expect(cli(['automata', '--sae', sae, ...common]).stderr).toMatch(/names no hook in its cfg\.json; pass --hook NAME/);
    const automata = cli(['automata', '--sae', sae, '--hook', 'blocks.0.mlp.hook_post', ...common, '--json']);
    expect(automata.status, automata.stderr).toBe(0);
    expect(JSON.parse(automata.stdout)).toMatchObject({ hook: 'blocks.0.mlp.hook_post', tokens: 3 * 7 });
    const compare = cli(['compare', '--sae-a', sae, '--sae-b', sae, '--hook-a', 'blocks.0.mlp.hook_post', '--hook-b', 'blocks.0.mlp.hook_post', '--model-a', tiny, '--data', jsonl, '--text-field', 'body', '--contexts', '3', '--context-length', '8', '--no-map', '--json']);
    expect(compare.status, compare.stderr).toBe(0);
    const sameHook = JSON.parse(compare.stdout);
    expect(sameHook.tokens).toBe(3 * 7);
    // One model's one hook: decoder directions compare, neurons would match themselves.
    expect(sameHook.decoderCosine).not.toBeNull();
    expect(sameHook.neurons).toBeNull();
    // Two hooks of one model: directions of two spaces do not compare; the neurons are the baseline.
    const twoHooks = cli(['compare', '--sae-a', sae, '--sae-b', sae, '--hook-a', 'blocks.0.mlp.hook_post', '--hook-b', 'blocks.1.mlp.hook_post', '--model-a', tiny, '--data', jsonl, '--text-field', 'body', '--contexts', '3', '--context-length', '8', '--no-map', '--json']);
    expect(twoHooks.status, twoHooks.stderr).toBe(0);
    expect(JSON.parse(twoHooks.stdout)).toMatchObject({ decoderCosine: null, neurons: { median: expect.any(Number) } });
    expect(cli(['browse', '--sae', sae, '--hook', 'blocks.0.mlp.hook_post', ...common.slice(0, -2), '--context-length', '25', '-o', path.join(root, 'b')]).stderr).toBe(
      "monosemantic: --context-length must be in [2, 24], the model's n_positions (got 25)\n",
    );
  });
});

describe('logit weights', () => {
  it('are taken for SAEs on an MLP hidden layer only, where W_out reads their space', () => {
    expect(logitWeightLayer('blocks.3.mlp.hook_post')).toBe(3);
    expect(logitWeightLayer('blocks.0.mlp.hook_pre')).toBeNull();
    expect(logitWeightLayer('blocks.0.hook_resid_post')).toBeNull();
  });
});
