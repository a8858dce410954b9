/**
 * Command-line flags checked where they are read, with the flag's name in the message; a missing
 * model folder named as such; defaults shown once in --help.
 */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { Command } from 'commander';
import { describe, expect, it } from 'vitest';

import { registerAutomata } from '../../lib/cli/automata.js';
import { registerBrowse } from '../../lib/cli/browse.js';
import { registerCompare } from '../../lib/cli/compare.js';
import { registerEval } from '../../lib/cli/eval.js';
import { registerFeatures } from '../../lib/cli/features.js';
import { registerGenerate } from '../../lib/cli/generate.js';
import { registerSteer } from '../../lib/cli/steer.js';
import { ModelConfigError } from '../../lib/lm/config.js';
import { Gpt2Model } from '../../lib/lm/model.js';
import { Tokenizer, TokenizerError } from '../../lib/lm/tokenizer.js';
import { packageRoot } from '../../lib/native/load.js';
import { saveSaeLens } from '../../lib/sae/saelens.js';
import { runCli } from '../helpers/cli.js';

const model = path.join(packageRoot(), 'test/fixtures/gpt2/tiny-gelu-new-tied');
const cli = (args: string[]) => runCli(args, { MONOSEMANTIC_BACKEND: 'cpu' });

/** Runs one command in this process, as the bin would (without its printing of errors). */
async function run(register: (program: Command) => void, args: string[]): Promise<void> {
  const program = new Command('monosemantic').exitOverride();
  register(program);
  await program.parseAsync(args, { from: 'user' });
}

describe('flag values are checked under the flag’s name', () => {
  it('generate: -n, --top-p, --top-k, --temperature, --seed and the length', async () => {
    const cases: [string[], string][] = [
      [['-n', '-3'], '--max-new-tokens must be a non-negative integer (got "-3")'],
      [['--top-p', '2'], '--top-p must be a number in (0, 1] (got "2")'],
      [['--top-k', '-1'], '--top-k must be a non-negative integer (got "-1")'],
      [['--temperature', '-0.5'], '--temperature must be a non-negative number (got "-0.5")'],
      [['--seed', '1.5'], '--seed must be an integer (got "1.5")'],
      [['-n', '23'], "the prompt's 3 tokens + --max-new-tokens 23 − 1 (the last is not fed back) exceed the model's n_positions 24"],
    ];
    for (const [flags, message] of cases) await expect(run(registerGenerate, ['generate', '--model', model, '--prompt', 'ab', ...flags])).rejects.toThrow(new RangeError(message));
  });

  it('eval: --context-length beyond the model’s positions', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'monosemantic-cli-flags-'));
    await saveSaeLens(path.join(dir, 'sae'), {
      dIn: 36,
      dSae: 8,
      params: { W_enc: new Float32Array(36 * 8), b_enc: new Float32Array(8), W_dec: new Float32Array(8 * 36).fill(0.1), b_dec: new Float32Array(36) },
      metadata: { modelName: 'tiny-gelu-new-tied', hookName: 'blocks.0.hook_resid_post', contextSize: 24, datasetPath: null },
    });
    await expect(run(registerEval, ['eval', '--sae', path.join(dir, 'sae'), '--model', model, '--context-length', '1000'])).rejects.toThrow(
      new RangeError("--context-length must be in [3, 24], the model's n_positions (got 1000)"),
    );
  });
});

describe('a --model folder that does not exist', () => {
  it('is reported as a missing folder, not a missing tokenizer.json', async () => {
    const missing = path.join(os.tmpdir(), 'monosemantic-no-such-model');
    const r = cli(['generate', '--model', missing, '--prompt', 'x']);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`monosemantic: ${missing}: no such folder\n`);
    await expect(Gpt2Model.load(missing)).rejects.toThrow(new ModelConfigError(missing, undefined, 'no such folder'));
    await expect(Tokenizer.load(path.join(model, 'config.json'))).rejects.toThrow(`${path.join(model, 'config.json')}: not a folder`);
  });

  it('while a folder without tokenizer.json is still reported as such', async () => {
    const empty = mkdtempSync(path.join(os.tmpdir(), 'monosemantic-empty-model-'));
    await expect(Tokenizer.load(empty)).rejects.toThrow(new TokenizerError(path.join(empty, 'tokenizer.json'), undefined, 'not found (a model folder holds its tokenizer as tokenizer.json)'));
  });
});

describe('--help', () => {
  it('shows each default once, numbers unquoted', () => {
    const program = new Command('monosemantic');
    for (const register of [registerEval, registerFeatures, registerBrowse, registerCompare, registerAutomata, registerGenerate, registerSteer]) register(program);
    const help = (name: string) => program.commands.find((c) => c.name() === name)!.helpInformation().replace(/\s+/g, ' ');
    for (const command of program.commands) {
      const text = help(command.name());
      expect(text, command.name()).not.toMatch(/\(default: [^)]*\) \(default:/);
      expect(text, command.name()).not.toMatch(/\(default: "[\d.]+"\)|\(default: \[\]\)/);
      expect(text, command.name()).toMatch(/--model(-a)? <dir> .*\(default: .*the model (the SAE's|its) cfg\.json names/);
    }
    expect(help('compare')).toContain('contexts compared over (default: 256)');
    expect(help('generate')).toContain('nucleus sampling threshold (1: off) (default: 1)');
  });
});
