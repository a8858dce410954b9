/**
 * `monosemantic lm train`: trains a GPT-2-family language model on token shards from a JSON config
 * (lib/lm/train-config.ts), flags overriding config keys; `--resume DIR` continues a run from its
 * latest good checkpoint. With no config, the paper's one-layer model on the package's corpus sample.
 */
import path from 'node:path';

import type { Command } from 'commander';

import { parseLmTrainConfig } from '../lm/train-config.js';
import { type LmTrainSummary, trainLm } from '../lm/lm-trainer.js';
import { expectRunFolder } from '../io/run-folder.js';
import { resolvePathKeys, setByPath } from '../sae/train-config.js';
import { applySetFlags, parseValue } from './flags.js';
import { withInterrupts } from './interrupt.js';
import { createProgress } from './progress.js';
import { readJson } from './train.js';

interface LmTrainFlags {
  config?: string;
  resume?: string;
  set?: string[];
  train?: string[];
  val?: string[];
  out?: string;
  steps?: string;
  tokens?: string;
  seed?: string;
  backend?: string;
  progress?: boolean;
  printConfig?: boolean;
}

async function buildConfig(flags: LmTrainFlags): Promise<{ doc: Record<string, unknown>; source: string }> {
  let doc: Record<string, unknown> = {};
  let source = 'flags';
  if (flags.resume) {
    if (flags.out !== undefined) throw new RangeError(`--out cannot be given with --resume: the run continues in its own folder (${flags.resume})`);
    if (flags.config !== undefined) throw new RangeError('--config cannot be given with --resume: the run continues with its own config.json (override keys with --set)');
    await expectRunFolder(flags.resume, 'lm train');
    source = path.join(flags.resume, 'config.json');
    doc = await readJson(source);
    doc.outDir = flags.resume;
  } else if (flags.config) {
    source = flags.config;
    doc = await readJson(flags.config);
  }
  const training = () => {
    if (typeof doc.training !== 'object' || doc.training === null) doc.training = {};
    return doc.training as Record<string, unknown>;
  };
  if (flags.steps !== undefined || flags.tokens !== undefined) {
    delete training().totalSteps;
    delete training().totalTokens;
  }
  if (flags.steps !== undefined) setByPath(doc, 'training.totalSteps', parseValue(flags.steps));
  if (flags.tokens !== undefined) setByPath(doc, 'training.totalTokens', parseValue(flags.tokens));
  if (!flags.resume && !flags.config && training().totalSteps === undefined && training().totalTokens === undefined) {
    training().totalSteps = 1000; // the flag-only default: a short run on the corpus sample
  }
  if (flags.train) setByPath(doc, 'data.train', flags.train);
  if (flags.val) setByPath(doc, 'data.val', flags.val);
  if (flags.out !== undefined) setByPath(doc, 'outDir', flags.out);
  if (flags.seed !== undefined) setByPath(doc, 'seed', parseValue(flags.seed));
  if (flags.backend) setByPath(doc, 'backend', flags.backend);
  applySetFlags(doc, flags.set, 'training.lr=1e-3');
  resolvePathKeys(doc, ['tokenizer', 'data.train', 'data.val']); // a resume reads the same files from any folder
  return { doc, source };
}

function formatSummary(s: LmTrainSummary): string {
  const fmt = (x: number | null) => (x === null ? 'n/a' : x.toFixed(4));
  const lines = [
    `${s.interrupted ? 'interrupted' : 'finished'} after ${s.steps} of ${s.totalSteps} steps (${s.tokens.toLocaleString('en-US')} tokens, ${(s.seconds / 60).toFixed(1)} min on ${s.device})`,
    `  training loss ${s.recentTrainLoss ? `${fmt(s.recentTrainLoss.loss)} (the last ${s.recentTrainLoss.steps.toLocaleString('en-US')} steps)` : 'n/a'}  validation loss ${fmt(s.valLoss)} (nats/token)`,
  ];
  if (s.modelDir) lines.push(`  model (HF GPT-2 folder with tokenizer and model card): ${s.modelDir}`);
  lines.push(`  checkpoint: ${s.checkpoint}`, `  metrics: ${path.join(s.outDir, 'metrics.jsonl')}`);
  if (s.interrupted) lines.push(`  resume with: monosemantic lm train --resume ${s.outDir}`);
  return lines.join('\n');
}

export function registerLm(program: Command): void {
  const lm = program.command('lm').description('language models: train the paper-style transformer');
  lm.command('train')
    .description('train a GPT-2-family language model on token shards (default: the one-layer model on the corpus sample)')
    .option('-c, --config <file>', 'JSON config file (see --print-config for every key and default)')
    .option('--resume <dir>', 'continue the run in DIR from its latest good checkpoint (its config.json, plus any overrides)')
    .option('--set <key=value>', 'override a config key, e.g. --set model.dModel=256 (repeatable)', (v: string, all: string[] | undefined) => [...(all ?? []), v])
    .option('--train <shards...>', 'training token shards (data.train)')
    .option('--val <shards...>', 'validation token shards (data.val)')
    .option('-o, --out <dir>', 'run folder (outDir)')
    .option('--steps <n>', 'total steps (training.totalSteps)')
    .option('--tokens <n>', 'total next-token predictions (training.totalTokens)')
    .option('--seed <n>', 'seed of the initial weights and the data order')
    .option('--backend <name>', 'auto, cpu or cuda')
    .option('--no-progress', 'no progress bar')
    .option('--print-config', 'print the resolved config (all defaults filled in) and exit')
    .action(async (flags: LmTrainFlags) => {
      const { doc, source } = await buildConfig(flags);
      const config = parseLmTrainConfig(doc, source);
      if (flags.printConfig) {
        process.stdout.write(`${JSON.stringify(config, null, 2)}\n`);
        return;
      }
      const enabled = flags.progress === false ? false : (config.logging.progress ?? process.stderr.isTTY === true);
      const command = ['monosemantic', ...process.argv.slice(2)].map((a) => (/^[\w./=:@+-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
      const summary = await withInterrupts((signal) =>
        trainLm(config, {
          resume: flags.resume !== undefined,
          signal,
          command,
          makeProgress: (initial, total) => createProgress({ total, initial, label: 'lm train', stream: process.stderr, enabled }),
          log: (line) => process.stderr.write(`${line}\n`),
        }),
      );
      process.stdout.write(`${formatSummary(summary)}\n`);
    });
}

