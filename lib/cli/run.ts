/**
 * `monosemantic run`: the main job. With no arguments, trains an SAE on the default model's
 * blocks.0.mlp.hook_post over the default corpus, sized for the machine, and prints the held-out
 * evaluation. Flags and a config file (lib/sae/run-config.ts) change anything.
 */
import path from 'node:path';

import type { Command } from 'commander';

import { formatUltraLow } from '../analysis/sae-eval.js';
import { RUN_CONFIG_FILE, resolveRunConfig, runMainJob, type MainRunSummary } from '../sae/lm-run.js';
import { expectRunFolder } from '../io/run-folder.js';
import { resolvePathKeys, setByPath } from '../sae/train-config.js';
import { applySetFlags, nonEmptyFlag, parseValue, positiveIntegerFlag } from './flags.js';
import { withInterrupts } from './interrupt.js';
import { formatDuration, createProgress } from './progress.js';
import { readJson } from './train.js';
import { modelDirOf } from '../lm/default-model.js';

interface RunFlags {
  config?: string;
  resume?: string;
  set?: string[];
  model?: string;
  hook?: string;
  data?: string[];
  out?: string;
  steps?: string;
  epochs?: string;
  dSae?: string;
  backend?: string;
  progress?: boolean;
  printConfig?: boolean;
}

async function flagsDoc(flags: RunFlags): Promise<Record<string, unknown>> {
  if (flags.resume !== undefined && flags.out !== undefined) throw new RangeError(`--out cannot be given with --resume: the run continues in its own folder (${flags.resume})`);
  if (flags.resume !== undefined) await expectRunFolder(flags.resume, 'run');
  const doc: Record<string, unknown> = flags.config ? await readJson(flags.config) : {};
  if (flags.steps !== undefined || flags.epochs !== undefined) {
    const training = (doc.training ??= {}) as Record<string, unknown>;
    delete training.totalSteps;
    delete training.totalSamples;
    setByPath(doc, 'budget.epochs', flags.epochs !== undefined ? parseValue(flags.epochs) : null);
    if (flags.steps !== undefined) training.totalSteps = positiveIntegerFlag('--steps', flags.steps);
  }
  if (flags.model !== undefined) setByPath(doc, 'model', nonEmptyFlag('--model', flags.model));
  if (flags.hook !== undefined) setByPath(doc, 'hook', nonEmptyFlag('--hook', flags.hook));
  if (flags.data) setByPath(doc, 'data.paths', flags.data);
  if (flags.out !== undefined) setByPath(doc, 'outDir', nonEmptyFlag('--out', flags.out));
  if (flags.dSae !== undefined) setByPath(doc, 'sae.dSae', positiveIntegerFlag('--d-sae', flags.dSae));
  if (flags.backend !== undefined) setByPath(doc, 'backend', flags.backend);
  applySetFlags(doc, flags.set, 'training.l1Coeff=3');
  if (typeof doc.model === 'string') doc.model = modelDirOf(doc.model); // a config's (or --set's) a / b: the package's models
  resolvePathKeys(doc, ['model', 'data.paths', 'eval.paths']); // a resume reads the same files from any folder
  return doc;
}

function formatSummary(s: MainRunSummary): string {
  const t = s.train;
  const passes = s.epochs === null ? '' : ` = ${s.epochs.toFixed(2)} passes over the corpus's positions`;
  const lines = [
    `${t.interrupted ? 'interrupted' : 'finished'} after ${t.steps} of ${t.totalSteps} steps: ${t.samples.toLocaleString('en-US')} activations${passes}, ${formatDuration(t.seconds)} (${s.backend})`,
    `  model ${s.modelDir}, hook ${s.hook}; ${(100 * t.dataWaitFraction).toFixed(1)}% of the training time was spent waiting for activations${s.backend === 'cuda' ? ' (on the host: device work queued for the harvest is counted in the steps)' : ''}`,
  ];
  if (s.skipped.length > 0) lines.push(`  the corpus reader skipped or repaired input in ${s.skipped.length} place${s.skipped.length === 1 ? '' : 's'} (file and reason: logged above, and in summary.json)`);
  for (const r of t.resamples) lines.push(`  step ${r.step}: resampled ${r.resampled} of ${r.dead} dead features`);
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const e = s.evaluation;
  if (t.dead !== null && t.ultraLow !== null && t.densitySamples !== null && e) {
    lines.push(
      `  last density window of training (${t.densitySamples.toLocaleString('en-US')} activations): dead ${t.dead} of ${e.dSae} (${pct(t.dead / e.dSae)})   ultra-low density (< 1e-6) ${formatUltraLow(t.ultraLow, e.dSae, t.densitySamples, 'activations')}`,
    );
  }
  if (e) {
    lines.push(
      `  held out: ${e.contexts} contexts, ${e.rows.toLocaleString('en-US')} activations (BOS positions excluded)`,
      `    MSE ${e.mse.toPrecision(4)} per element   fraction of variance unexplained ${e.fvu.toFixed(4)}   L0 ${e.l0.toFixed(1)}`,
      `    dead ${e.dead} of ${e.dSae} (${pct(e.dead / e.dSae)}, no activation on these ${e.rows.toLocaleString('en-US')})   ultra-low density (< 1e-6) ${formatUltraLow(e.ultraLow, e.dSae, e.rows, 'activations')}`,
      `    next-token loss: clean ${e.loss.clean.toFixed(4)}, SAE spliced in ${e.loss.spliced.toFixed(4)}, zero-ablated ${e.loss.zeroAblated.toFixed(4)} nats`,
      `    loss recovered ${pct(e.loss.fractionRecovered)}   KL(clean ‖ spliced) ${e.loss.klSpliced.toFixed(4)} nats/token`,
    );
  }
  if (t.exportDir) lines.push(`  SAE (SAELens format): ${t.exportDir}`);
  lines.push(`  checkpoint: ${t.checkpoint}`, `  metrics: ${path.join(s.outDir, 'metrics.jsonl')}`);
  if (!t.interrupted) lines.push(`  curves: ${path.join(s.outDir, 'curves.svg')}`, `  summary: ${path.join(s.outDir, 'summary.json')}`);
  else lines.push(`  resume with: monosemantic run --resume ${s.outDir}`);
  return lines.join('\n');
}

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('the main job: harvest a model hook over a corpus, train an SAE, export and evaluate it (defaults sized for this machine)')
    .option('-c, --config <file>', 'JSON config file (see --print-config for every key and default)')
    .option('--resume <dir>', `continue the run in DIR from its latest good checkpoint (its ${RUN_CONFIG_FILE}, plus any overrides)`)
    .option('--set <key=value>', 'override a config key, e.g. --set training.l1Coeff=3 (repeatable)', (v: string, all: string[] | undefined) => [...(all ?? []), v])
    .option('--model <dir>', 'HF model folder, or a / b: the package’s models (default: a)', modelDirOf)
    .option('--hook <name>', 'hook point (default blocks.0.mlp.hook_post)')
    .option('--data <paths...>', 'token shards (.tokens), or text files, folders, JSONL / Parquet files, globs')
    .option('-o, --out <dir>', 'run folder (outDir)')
    .option('--steps <n>', 'total SAE steps (training.totalSteps)')
    .option('--epochs <n>', 'passes over the corpus positions (budget.epochs; token shards)')
    .option('--d-sae <n>', 'dictionary size (sae.dSae)')
    .option('--backend <name>', 'auto, cpu or cuda')
    .option('--no-progress', 'no progress bar')
    .option('--print-config', 'print the resolved config (this machine’s defaults filled in) and exit')
    .action(async (flags: RunFlags) => {
      const doc = await flagsDoc(flags);
      const { config } = await resolveRunConfig(doc, { ...(flags.resume ? { resume: flags.resume } : {}), ...(flags.config ? { source: flags.config } : {}) });
      if (flags.printConfig) {
        process.stdout.write(`${JSON.stringify(config, null, 2)}\n`);
        return;
      }
      const enabled = flags.progress === false ? false : (config.logging.progress ?? process.stderr.isTTY === true);
      const summary = await withInterrupts((signal) =>
        runMainJob(config, {
          resume: flags.resume !== undefined,
          signal,
          makeProgress: (initial, total) => createProgress({ total, initial, label: 'run', stream: process.stderr, enabled }),
          log: (line) => process.stderr.write(`${line}\n`),
        }),
      );
      process.stdout.write(`${formatSummary(summary)}\n`);
    });
}
