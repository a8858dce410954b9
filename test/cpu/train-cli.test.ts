/** `monosemantic train` run as users run it: flags over a config, SIGINT → checkpoint → resume, config errors. */
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { readMetrics } from '../../lib/sae/metrics-log.js';
import { cliBin as bin, runCli } from '../helpers/cli.js';
import { tempDir, writePlantedActivations } from '../helpers/run-fixtures.js';

const env = { ...process.env, MONOSEMANTIC_BACKEND: 'cpu', MONOSEMANTIC_THREADS: '1' };
let root = '';
let data = '';

const cli = (args: string[]) => runCli(args, env);

beforeAll(() => {
  root = tempDir('train-cli');
  data = path.join(root, 'data');
  mkdirSync(data);
  writePlantedActivations(data, { atoms: 32, d: 8, files: 2, rowsPerFile: 1000, seed: 2 });
});

describe('monosemantic train', () => {
  it('trains from a config file with flags overriding keys, and prints a summary', () => {
    const config = path.join(root, 'run.json');
    writeFileSync(config, JSON.stringify({ data: { paths: [data] }, sae: { dSae: 16 }, training: { totalSteps: 1000, batchSize: 32 }, resampling: { enabled: false } }));
    const out = path.join(root, 'from-config');
    const r = cli(['train', '--config', config, '--out', out, '--steps', '40', '--set', 'logging.every=10', '--set', 'training.lr=0.003', '--no-progress']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/finished after 40 of 40 steps \(1,280 samples/);
    expect(r.stdout).toMatch(/SAE \(SAELens format\): .*from-config\/sae/);
    expect(existsSync(path.join(out, 'sae', 'cfg.json'))).toBe(true);
    expect(existsSync(path.join(out, 'curves.svg'))).toBe(true);
    const info = cli(['sae', 'info', path.join(out, 'sae'), '--json']);
    expect(info.status).toBe(0);
    expect(JSON.parse(info.stdout)).toMatchObject({ dIn: 8, dSae: 16 });
  });

  it('names the field of a bad config and exits 1', () => {
    const config = path.join(root, 'bad.json');
    writeFileSync(config, JSON.stringify({ data: { paths: [data] }, sae: { dSae: 16, penalty: 'l3' }, training: { totalSteps: 5, speed: 2 } }));
    const r = cli(['train', '--config', config, '--out', path.join(root, 'bad')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/monosemantic: invalid training config/);
    expect(r.stderr).toMatch(/sae\.penalty: must be one of "l1", "l1_decnorm"/);
    expect(r.stderr).toMatch(/training: unknown key 'speed'/);
    const missing = cli(['train', '--data', path.join(root, 'nothing-here'), '--d-sae', '4', '--steps', '3', '--out', path.join(root, 'nodata')]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/^monosemantic: .*nothing-here/m);
  });

  it('flags: empty values, missing sizes and prototype keys are refused naming them', () => {
    const base = ['train', '--data', data, '--out', path.join(root, 'flags')];
    expect(cli([...base, '--d-sae', '', '--steps', '3']).stderr).toMatch(/--d-sae must be a positive integer \(got ""\)/);
    expect(cli([...base, '--steps', '3']).stderr).toMatch(/sae\.dSae is required: the dictionary size \(--d-sae N\)/);
    expect(cli([...base, '--d-sae', '4']).stderr).toMatch(/training\.totalSteps \(--steps N\) or training\.totalSamples is required/);
    const proto = cli([...base, '--d-sae', '4', '--steps', '3', '--set', '__proto__.x=1']);
    expect(proto.status).toBe(1);
    expect(proto.stderr).toMatch(/__proto__\.x: '__proto__' is not a config key/);
  });

  it('a run started with relative paths resumes from any folder; --resume refuses --config, and a folder of another command', () => {
    // Started from root with a relative data path, stopped after 20 of its steps (a finished run of
    // 20 steps, resumed for 30).
    const started = runCli(['train', '--data', 'data', '--d-sae', '8', '--steps', '20', '--out', 'relative', '--set', 'training.batchSize=32', '--set', 'resampling.enabled=false', '--no-progress'], env, root);
    expect(started.status, started.stderr).toBe(0);
    const resumed = runCli(['train', '--resume', path.join(root, 'relative'), '--steps', '30', '--no-progress'], env, path.dirname(root));
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/finished after 30 of 30 steps/);
    const config = path.join(root, 'override.json');
    writeFileSync(config, JSON.stringify({ training: { lr: 0.5 } }));
    const both = cli(['train', '--resume', path.join(root, 'relative'), '--config', config]);
    expect(both.status).toBe(1);
    expect(both.stderr).toMatch(/--config cannot be given with --resume/);
    // A glob from a folder whose name holds glob syntax: the folder is matched literally.
    const odd = path.join(root, 'proj (copy) [2]');
    cpSync(data, path.join(odd, 'data'), { recursive: true });
    const globbed = runCli(['train', '--data', 'data/*.npy', '--d-sae', '8', '--steps', '5', '--out', 'out', '--set', 'training.batchSize=32', '--no-progress'], env, odd);
    expect(globbed.status, globbed.stderr).toBe(0);
    const resumedGlob = runCli(['train', '--resume', path.join(odd, 'out'), '--steps', '8', '--no-progress'], env, root);
    expect(resumedGlob.status, resumedGlob.stderr).toBe(0);
    const asLm = cli(['lm', 'train', '--resume', path.join(root, 'relative')]);
    expect(asLm.status).toBe(1);
    expect(asLm.stderr).toMatch(/holds a `monosemantic train` run, not a `monosemantic lm train` one: resume it with `monosemantic train --resume /);
  });

  it('on SIGINT saves a checkpoint and exits with status 130; --resume continues the same run', async () => {
    const out = path.join(root, 'interrupted');
    const args = [bin, 'train', '--data', data, '--d-sae', '16', '--steps', '200000', '--out', out, '--set', 'training.batchSize=32', '--set', 'logging.every=50', '--set', 'resampling.enabled=false', '--set', 'logging.progress=true'];
    const child = spawn(process.execPath, args, { env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    const code = await new Promise<number | null>((resolve) => {
      child.stderr.on('data', (c: Buffer) => {
        stderr += c.toString();
        // The first plain progress line means training is under way.
        if (/train .*\d+\/200000/.test(stderr) && !child.killed) child.kill('SIGINT');
      });
      child.on('exit', (c) => resolve(c));
    });
    expect(stderr).toMatch(/SIGINT: saving a checkpoint/);
    expect(code).toBe(130); // as shells report a command SIGINT stopped; a finished run exits 0
    const steps = Number(/interrupted after (\d+) of 200000 steps/.exec(stdout)?.[1]);
    expect(steps).toBeGreaterThan(0);
    expect(stdout).toMatch(/resume with: monosemantic train --resume/);

    const r = cli(['train', '--resume', out, '--steps', String(steps + 100), '--no-progress']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`resuming from .*step-0*${steps} at step ${steps} of ${steps + 100}`));
    expect(r.stdout).toMatch(new RegExp(`finished after ${steps + 100} of ${steps + 100} steps`));
    const records = await readMetrics(path.join(out, 'metrics.jsonl'));
    const stepsLogged = records.map((rec) => rec.step);
    expect(new Set(stepsLogged).size).toBe(stepsLogged.length);
  });
});
