#!/usr/bin/env node
/** The `monosemantic` command line: one file per command, thin over the library. */
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { Command } from 'commander';

import { packageRoot } from '../native/load.js';
import { registerAutomata } from './automata.js';
import { registerBrowse } from './browse.js';
import { registerCompare } from './compare.js';
import { registerDoctor } from './doctor.js';
import { registerEval } from './eval.js';
import { registerFeatures } from './features.js';
import { registerGenerate } from './generate.js';
import { registerHarvest } from './harvest.js';
import { registerLm } from './lm-train.js';
import { registerRun } from './run.js';
import { registerSae } from './sae-info.js';
import { registerSteer } from './steer.js';
import { registerTokenize } from './tokenize.js';
import { registerTrain } from './train.js';

const version = JSON.parse(readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')).version as string;
const program = new Command('monosemantic').description('sparse autoencoders for language-model interpretability').version(version);
registerDoctor(program);
registerRun(program);
registerSae(program);
registerEval(program);
registerFeatures(program);
registerBrowse(program);
registerCompare(program);
registerAutomata(program);
registerGenerate(program);
registerSteer(program);
registerHarvest(program);
registerTrain(program);
registerLm(program);
registerTokenize(program);

// Errors that describe a problem with the user's input, files or machine: printed as one line
// (exit code 1). Anything else is a bug and keeps its stack trace.
const USER_ERRORS = new Set([
  'MonosemanticError',
  'ConfigError',
  'TrainingError',
  'CheckpointError',
  'SaeLensError',
  'SafetensorsError',
  'NpyError',
  'ActivationFileError',
  'ActivationSourceError',
  'ModelConfigError',
  'ModelWeightsError',
  'TokenizerError',
  'CorpusError',
  'ContextStreamError',
  'ActivationCacheError',
  'TokenShardError',
  'TypeError',
  'RangeError',
]);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof Error && USER_ERRORS.has(error.name)) {
    console.error(`monosemantic: ${error.message}`);
    process.exitCode = 1;
  } else {
    throw error;
  }
}
