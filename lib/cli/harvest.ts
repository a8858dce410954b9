/**
 * `monosemantic harvest`: runs a model over a corpus (text or token shards) and caches the
 * activations of one hook on disk (checksummed shards + manifest), ready for
 * `monosemantic train --data OUT/manifest.json`. Running the same command again resumes an
 * interrupted build; SIGINT stops after the current shard. What the text reader skips is printed
 * as it is found.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import type { Command } from 'commander';

import { buildActivationCache } from '../data/activation-cache.js';
import { openCorpusContexts, skipLog } from '../data/corpus-contexts.js';
import { LmActivationSource } from '../data/lm-activations.js';
import { passSeed } from '../data/stream-common.js';
import { defaultModelDir, modelDirOf } from '../lm/default-model.js';
import { Gpt2Model } from '../lm/model.js';
import { Tokenizer } from '../lm/tokenizer.js';
import { absolutePathOrPattern } from '../sae/train-config.js';
import { nonNegativeIntegerFlag, optionWithDefault, positiveIntegerFlag } from './flags.js';
import { withInterrupts } from './interrupt.js';

interface HarvestFlags {
  model: string;
  corpus: string[];
  hook: string;
  rows: string;
  out: string;
  context: string;
  positions: string;
  window: string;
  batch: string;
  shardRows: string;
  dtype: 'f32' | 'bf16';
  seed: string;
  textField?: string;
  backend?: 'cpu' | 'cuda';
}

/** How many times the activation stream had started the corpus over when its build state was saved (0 when unknown). */
async function passesBeyondFirst(buildFile: string): Promise<number> {
  try {
    const epoch = (JSON.parse(await readFile(buildFile, 'utf8')) as { source?: { epoch?: unknown } }).source?.epoch;
    return typeof epoch === 'number' && Number.isSafeInteger(epoch) && epoch > 0 ? epoch : 0;
  } catch {
    return 0;
  }
}

export function registerHarvest(program: Command): void {
  program
    .command('harvest')
    .description("cache a hook's activations over a corpus (for train --data DIR/manifest.json)")
    .addOption(optionWithDefault('--model <dir>', 'model directory: config.json, model.safetensors, tokenizer.json; a or b: the package’s models', defaultModelDir(), 'the package’s model A').argParser(modelDirOf))
    .requiredOption('--corpus <paths...>', 'token shards (.tokens), or text files, folders, JSONL or Parquet files, globs')
    .requiredOption('--hook <name>', 'hook point, e.g. blocks.0.mlp.hook_post')
    .requiredOption('--rows <n>', 'activation rows to cache')
    .requiredOption('-o, --out <dir>', 'cache folder')
    .addOption(optionWithDefault('--context <n>', 'tokens per context (at most the model’s n_positions)', '128'))
    .addOption(optionWithDefault('--positions <n>', 'positions kept per context', '64'))
    .addOption(optionWithDefault('--window <n>', 'contexts mixed in one shuffle window', '256'))
    .addOption(optionWithDefault('--batch <n>', 'contexts per model forward', '16'))
    .addOption(optionWithDefault('--shard-rows <n>', 'rows per shard file', '65536'))
    .option('--dtype <dtype>', 'f32 or bf16 on disk', 'f32')
    .addOption(optionWithDefault('--seed <n>', 'seed of document order, positions and mixing', '0'))
    .option('--text-field <name>', 'JSONL / Parquet text column', 'text')
    .option('--backend <name>', 'cpu or cuda (default: the active backend)')
    .action(async (flags: HarvestFlags) => {
      const contextLength = positiveIntegerFlag('--context', flags.context);
      const seed = nonNegativeIntegerFlag('--seed', flags.seed);
      const tokenizer = await Tokenizer.load(flags.model);
      using model = await Gpt2Model.load(flags.model, flags.backend ? { backend: flags.backend } : {});
      if (contextLength > model.config.nPositions) throw new RangeError(`--context ${contextLength} exceeds the model's n_positions ${model.config.nPositions}`);
      await withInterrupts(async (signal) => {
        const corpus = {
          paths: flags.corpus,
          textField: flags.textField ?? 'text',
          tokenizer,
          contextLength,
          seed,
          // Token shards are read whole and checked (checksum, every token in the vocabulary) before
          // any activation is cached from them, as `run` does.
          verify: true,
          onSkip: skipLog((line) => process.stderr.write(`${line}\n`)).onSkip,
        };
        const result = await buildActivationCache({
          dir: flags.out,
          rows: positiveIntegerFlag('--rows', flags.rows),
          shardRows: positiveIntegerFlag('--shard-rows', flags.shardRows),
          dtype: flags.dtype,
          // What the stream is of, so that a resume with other options is refused (rows, shard rows
          // and dtype are checked as such). Not --batch: contexts per forward do not change the rows.
          of: {
            hook: flags.hook,
            corpus: flags.corpus.map(absolutePathOrPattern),
            'text-field': flags.textField ?? 'text',
            context: contextLength,
            positions: positiveIntegerFlag('--positions', flags.positions),
            window: positiveIntegerFlag('--window', flags.window),
            seed,
          },
          // Older versions recorded --batch and the corpus paths as typed (from this folder, they read the same).
          savedOf: ({ batch: _batch, ...saved }) => ({ ...saved, ...(Array.isArray(saved.corpus) ? { corpus: saved.corpus.map((p) => (typeof p === 'string' ? absolutePathOrPattern(p) : p)) } : {}) }),
          inputs: { model: flags.model },
          describes: { modelName: path.basename(path.resolve(flags.model)), hookName: flags.hook, contextSize: contextLength, datasetPath: flags.corpus.map((p) => path.resolve(p)).join(',') },
          backend: model.backend,
          signal,
          log: (line) => process.stderr.write(`${line}\n`),
          openSource: (state) =>
            LmActivationSource.open({
              model,
              hook: flags.hook,
              contextLength,
              seed,
              positionsPerContext: positiveIntegerFlag('--positions', flags.positions),
              contextsPerWindow: positiveIntegerFlag('--window', flags.window),
              forwardBatch: positiveIntegerFlag('--batch', flags.batch),
              openContexts: (contextState, pass) => openCorpusContexts({ ...corpus, seed: passSeed(seed, pass), ...(contextState ? { state: contextState } : {}) }),
              ...(state ? { state: state as never } : {}),
            }),
        });
        process.stdout.write(
          `${result.complete ? 'cached' : 'stopped after'} ${result.rows.toLocaleString('en-US')} rows of ${flags.hook} in ${result.shards} shards: ${result.manifest}\n` +
            (result.complete ? `train on them with: monosemantic train --data ${result.manifest} --d-sae N --steps N\n` : 'run the same command to resume\n'),
        );
        // The activation stream starts the corpus over when it ends (LmActivationState.epoch counts the
        // restarts): say so, since such a cache repeats its positions.
        const passes = 1 + (await passesBeyondFirst(path.join(flags.out, 'cache-build.json')));
        if (passes > 1) {
          process.stderr.write(`note: the corpus ran out before ${result.rows.toLocaleString('en-US')} rows; it was read ${passes} times over, so the cache repeats its positions (a larger corpus, or fewer --rows, avoids it)\n`);
        }
      }, 'stopping after the current shard; run the same command to resume');
    });
}
