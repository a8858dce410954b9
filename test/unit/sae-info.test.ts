/** `monosemantic sae info`, run as users run it (the compiled bin) on SAEs saved by saveSaeLens. */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { quantile } from '../../lib/cli/sae-info.js';
import { type SaeLensExport, saveSaeLens } from '../../lib/sae/saelens.js';
import { runCli } from '../helpers/cli.js';


const cli = (args: string[]) => runCli(args);

/** dIn 3, dSae 10; decoder row i is (i + 1)·e₀, so the row norms are 1..10. */
function knownSae(): SaeLensExport {
  const dIn = 3;
  const dSae = 10;
  const W_dec = new Float32Array(dSae * dIn);
  for (let i = 0; i < dSae; i++) W_dec[i * dIn] = i + 1;
  return {
    dIn,
    dSae,
    params: { W_enc: new Float32Array(dIn * dSae), b_enc: new Float32Array(dSae), W_dec, b_dec: new Float32Array(dIn) },
    metadata: { modelName: 'gpt2', hookName: 'blocks.6.hook_resid_post', contextSize: 128, datasetPath: 'openwebtext' },
    // 3 dead (-inf, -12, -10), 2 ultra-low (-7, -6.5); -6 is neither.
    sparsityLog10: Float32Array.from([-2, -Infinity, -0.5, -10, -7, -12, -3, -1, -6.5, -2]),
    training: { penalty: 'l1', l1_coeff: 5, training_steps: 2000, training_samples: 122880, lr: 0.000123456, version: '0.1.0' },
  };
}

describe('monosemantic sae info', () => {
  let root: string;
  let dir: string;
  beforeAll(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'monosemantic-sae-info-'));
    dir = path.join(root, 'sae');
    await saveSaeLens(dir, knownSae());
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('prints shape, model, training record, decoder norms and density', () => {
    const r = cli(['sae', 'info', dir]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`path\\s+${dir}\\n`));
    expect(r.stdout).toMatch(/architecture\s+standard\n/);
    expect(r.stdout).toMatch(/d_in\s+3\n/);
    expect(r.stdout).toMatch(/d_sae\s+10\n/);
    expect(r.stdout).toMatch(/dtype\s+float32\n/);
    expect(r.stdout).toMatch(/model\s+gpt2\n/);
    expect(r.stdout).toMatch(/hook\s+blocks\.6\.hook_resid_post\n/);
    expect(r.stdout).toMatch(/context size\s+128\n/);
    expect(r.stdout).toMatch(/dataset\s+openwebtext\n/);
    expect(r.stdout).toMatch(/penalty\s+l1\n/);
    expect(r.stdout).toMatch(/l1_coeff\s+5\n/);
    expect(r.stdout).toMatch(/training_steps\s+2000\n/);
    expect(r.stdout).toMatch(/training_samples\s+122880\n/); // whole numbers exactly
    expect(r.stdout).toMatch(/lr\s+0\.0001235\n/); // others to 4 significant digits
    expect(r.stdout).toMatch(/decoder norms\s+min 1, median 5\.5, max 10\n/);
    expect(r.stdout).toMatch(/dead\s+3 of 10 \(30\.0%; log10 density <= -10\)\n/);
    expect(r.stdout).toMatch(/ultra-low\s+2 of 10 \(20\.0%; -10 < log10 density < -6\)\n/);
    expect(r.stdout).toMatch(/log10 density\s+min -inf, p10 -inf, p25 -9\.25, median -4\.75, p75 -2, p90 -0\.95, max -0\.5/);
  });

  it('--json gives the same facts, -inf as a string', () => {
    const r = cli(['sae', 'info', dir, '--json']);
    expect(r.status).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(info).toMatchObject({
      path: dir,
      architecture: 'standard',
      dIn: 3,
      dSae: 10,
      dtype: 'float32',
      metadata: { modelName: 'gpt2', hookName: 'blocks.6.hook_resid_post', contextSize: 128, datasetPath: 'openwebtext', prependBos: true, hookHeadIndex: null },
      training: { penalty: 'l1', l1_coeff: 5, training_steps: 2000, training_samples: 122880, lr: 0.000123456, version: '0.1.0' },
      decoderNorms: { min: 1, median: 5.5, max: 10 },
      density: { features: 10, dead: 3, ultraLow: 2 },
    });
    const q = info.density.quantiles;
    expect([q.min, q.p10, q.max]).toEqual(['-Infinity', '-Infinity', -0.5]);
    expect(q.p25).toBeCloseTo(-9.25, 6);
    expect(q.median).toBeCloseTo(-4.75, 6);
    expect(q.p75).toBe(-2);
    expect(q.p90).toBeCloseTo(-0.95, 6);
  });

  it('says so when there is no sparsity file or training record', async () => {
    const bare = path.join(root, 'bare');
    const { sparsityLog10: _s, training: _t, ...sae } = knownSae();
    await saveSaeLens(bare, sae);
    const r = cli(['sae', 'info', bare]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/training\s+no monosemantic record\n/);
    expect(r.stdout).toMatch(/density\s+unknown \(no sparsity\.safetensors\)/);
    expect(JSON.parse(cli(['sae', 'info', bare, '--json']).stdout)).toMatchObject({ training: null, density: null });
  });

  it('exits 1 with the path when the folder is missing', () => {
    const missing = path.join(root, 'does-not-exist');
    const r = cli(['sae', 'info', missing]);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim()).toBe(`monosemantic: ${missing}: no such directory`);
  });

  it('exits 1 naming the field for an SAE it cannot run', async () => {
    const other = path.join(root, 'jumprelu');
    await saveSaeLens(other, knownSae());
    const cfgPath = path.join(other, 'cfg.json');
    const cfg = JSON.parse(await readFile(cfgPath, 'utf8'));
    await writeFile(cfgPath, JSON.stringify({ ...cfg, architecture: 'jumprelu' }));
    const r = cli(['sae', 'info', other]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^monosemantic: .*cfg\.json: architecture: "jumprelu" is not supported/);
  });
});

describe('quantile', () => {
  it('interpolates linearly between order statistics, as numpy does', () => {
    const sorted = [1, 2, 3, 4];
    expect(quantile(sorted, 0)).toBe(1);
    expect(quantile(sorted, 1)).toBe(4);
    expect(quantile(sorted, 0.5)).toBe(2.5);
    expect(quantile(sorted, 0.25)).toBe(1.75);
    expect(quantile([7], 0.3)).toBe(7);
  });

  it('stays -inf between -inf and a number', () => {
    expect(quantile([-Infinity, -3, 0], 0.25)).toBe(-Infinity);
    expect(quantile([-Infinity, -3, 0], 0.75)).toBe(-1.5);
  });
});
