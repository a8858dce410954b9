/**
 * `monosemantic train`: trains an SAE from a JSON config (lib/sae/train-config.ts), with flags
 * overriding config keys; `--resume DIR` continues a run from its latest good checkpoint.
 * SIGINT / SIGTERM write a checkpoint and exit cleanly (a second signal exits at once).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import type { Command } from 'commander';

import { applySetFlags, positiveIntegerFlag } from './flags.js';
import { withInterrupts } from './interrupt.js';
import { createProgress } from './progress.js';
import { describeActivations } from '../data/activation-source.js';
import { ConfigError, parseTrainConfig, resolvePathKeys, setByPath } from '../sae/train-config.js';
import { type TrainSummary, train } from '../sae/trainer.js';
import { expectRunFolder } from '../io/run-folder.js';

interface TrainFlags {
  config?: string;
  resume?: string;
  set?: string[];
  data?: string[];
  out?: string;
  steps?: string;
  dSae?: string;
  backend?: string;
  progress?: boolean;
  printConfig?: boolean;
}

export async function readJson(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new ConfigError([`cannot read ${file}: ${(error as Error).message}`]);
  }
  try {
    const value = JSON.parse(text) as unknown;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not a JSON object');
    return value as Record<string, unknown>;
  } catch (error) {
    throw new ConfigError([`${file} is not valid JSON: ${(error as Error).message}`]);
  }
}

/** The config document: file (or the resumed run's), then flags on top. */
async function buildConfig(flags: TrainFlags): Promise<{ doc: Record<string, unknown>; source: string }> {
  let doc: Record<string, unknown> = {};
  let source = 'flags';
  if (flags.resume) {
    if (flags.out !== undefined) throw new RangeError(`--out cannot be given with --resume: the run continues in its own folder (${flags.resume})`);
    if (flags.config !== undefined) throw new RangeError('--config cannot be given with --resume: the run continues with its own config.json (override keys with --set)');
    await expectRunFolder(flags.resume, 'train');
    source = path.join(flags.resume, 'config.json');
    doc = await readJson(source);
    doc.outDir = flags.resume;
  } else if (flags.config) {
    source = flags.config;
    doc = await readJson(flags.config);
  }
  if (flags.data) setByPath(doc, 'data.paths', flags.data);
  if (flags.out !== undefined) setByPath(doc, 'outDir', flags.out);
  if (flags.steps !== undefined) {
    setByPath(doc, 'training.totalSteps', positiveIntegerFlag('--steps', flags.steps));
    const training = doc.training as Record<string, unknown>;
    delete training.totalSamples;
  }
  if (flags.dSae !== undefined) setByPath(doc, 'sae.dSae', positiveIntegerFlag('--d-sae', flags.dSae));
  if (flags.backend !== undefined) setByPath(doc, 'backend', flags.backend);
  applySetFlags(doc, flags.set, 'training.lr=3e-4');
  resolvePathKeys(doc, ['data.paths']); // a resume reads the same files from any folder
  // The two keys with no default, named with their flags (the schema would say "sae: expected object").
  const section = (name: string) => (typeof doc[name] === 'object' && doc[name] !== null ? (doc[name] as Record<string, unknown>) : {});
  const missing: string[] = [];
  if (section('sae').dSae === undefined) missing.push('sae.dSae is required: the dictionary size (--d-sae N)');
  if (section('training').totalSteps === undefined && section('training').totalSamples === undefined) {
    missing.push('training.totalSteps (--steps N) or training.totalSamples is required: how long to train');
  }
  if (missing.length > 0) throw new ConfigError(missing, source);
  return { doc, source };
}

function formatSummary(s: TrainSummary): string {
  const lines = [
    `${s.interrupted ? 'interrupted' : 'finished'} after ${s.steps} of ${s.totalSteps} steps (${s.samples.toLocaleString('en-US')} samples, ${s.seconds.toFixed(1)} s, ${s.backend})`,
  ];
  if (s.last) {
    const l = s.last;
    lines.push(`  loss ${l.loss.toPrecision(4)}  MSE ${l.mse.toPrecision(4)} per row  L1 ${l.sparsity.toPrecision(4)}  L0 ${l.l0.toFixed(1)}  FVU ${l.fvu === null ? 'n/a' : l.fvu.toPrecision(3)}  (normalised inputs, last logged batch)`);
  }
  if (s.dead !== null) lines.push(`  dead features ${s.dead}, ultra-low density (< 1e-6) ${s.ultraLow} (last density window)`);
  for (const r of s.resamples) lines.push(`  step ${r.step}: resampled ${r.resampled} of ${r.dead} dead features`);
  if (s.exportDir) lines.push(`  SAE (SAELens format): ${s.exportDir}`);
  lines.push(`  checkpoint: ${s.checkpoint}`, `  metrics: ${path.join(s.outDir, 'metrics.jsonl')}`);
  if (!s.interrupted) lines.push(`  curves: ${path.join(s.outDir, 'curves.svg')}`);
  else lines.push(`  resume with: monosemantic train --resume ${s.outDir}`);
  return lines.join('\n');
}

export function registerTrain(program: Command): void {
  program
    .command('train')
    .description('train a sparse autoencoder on activation files')
    .option('-c, --config <file>', 'JSON config file (see --print-config for every key and default)')
    .option('--resume <dir>', "continue the run in DIR from its latest good checkpoint (its config.json, plus any overrides)")
    .option('--set <key=value>', 'override a config key, e.g. --set training.lr=3e-4 (repeatable)', (v: string, all: string[] | undefined) => [...(all ?? []), v])
    .option('--data <paths...>', 'activation files, folders or globs (data.paths)')
    .option('-o, --out <dir>', 'run folder (outDir)')
    .option('--steps <n>', 'total training steps (training.totalSteps)')
    .option('--d-sae <n>', 'dictionary size (sae.dSae)')
    .option('--backend <name>', 'auto, cpu or cuda')
    .option('--no-progress', 'no progress bar')
    .option('--print-config', 'print the resolved config (all defaults filled in) and exit')
    .action(async (flags: TrainFlags) => {
      if (!flags.config && !flags.resume && !flags.data) throw new ConfigError(['give --config FILE, --resume DIR, or at least --data and --d-sae and --steps']);
      const { doc, source } = await buildConfig(flags);
      if (flags.printConfig) {
        process.stdout.write(`${JSON.stringify(parseTrainConfig(doc, source), null, 2)}\n`);
        return;
      }
      const parsed = parseTrainConfig(doc, source);
      // The export's metadata (model, hook, context size, dataset) that the config leaves out is
      // taken from what the activation manifests say they are of.
      const described = parsed.data ? await describeActivations(parsed.data.paths) : null;
      const e = parsed.export;
      const config = described
        ? {
            ...parsed,
            export: {
              modelName: e.modelName ?? described.modelName,
              hookName: e.hookName ?? described.hookName,
              contextSize: e.contextSize ?? described.contextSize,
              datasetPath: e.datasetPath ?? described.datasetPath,
            },
          }
        : parsed;
      // Progress lines on a terminal by default; config or --no-progress turn them off, and
      // logging.progress: true prints plain lines where stderr is not a terminal.
      const enabled = flags.progress === false ? false : (config.logging.progress ?? process.stderr.isTTY === true);
      const summary = await withInterrupts((signal) =>
        train(config, {
          resume: flags.resume !== undefined,
          signal,
          makeProgress: (initial, total) => createProgress({ total, initial, label: 'train', stream: process.stderr, enabled }),
          log: (line) => process.stderr.write(`${line}\n`),
        }),
      );
      process.stdout.write(`${formatSummary(summary)}\n`);
    });
}
