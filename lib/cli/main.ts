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
  'FolderLockedError',
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
  // The library's argument checks, which flag values reach (generate --backend tpu, harvest --dtype
  // f16). A TypeError the engine raises (a bug) is printed as one line too; moving those checks
  // to typed errors would let it keep its stack trace.
  'TypeError',
  'RangeError',
]);

// Node's system errors (those with a syscall) with these codes are about the user's files or
// machine: a missing or unwritable path, a full disk. Others (EBADF, EINVAL) are more likely bugs.
const USER_SYSTEM_ERRORS = new Set(['ENOENT', 'EACCES', 'EPERM', 'EROFS', 'ENOTDIR', 'EISDIR', 'EEXIST', 'ENOTEMPTY', 'ENAMETOOLONG', 'ELOOP', 'ENOSPC', 'EDQUOT', 'EFBIG', 'EIO', 'EMFILE', 'ENFILE', 'EBUSY', 'EXDEV', 'EADDRINUSE', 'EADDRNOTAVAIL']);

function isUserError(error: unknown): error is Error {
  if (!(error instanceof Error)) return false;
  if (USER_ERRORS.has(error.name)) return true;
  const { code, syscall } = error as NodeJS.ErrnoException;
  return typeof syscall === 'string' && typeof code === 'string' && USER_SYSTEM_ERRORS.has(code);
}

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (isUserError(error)) {
    console.error(`monosemantic: ${error.message}`);
    process.exitCode = 1;
  } else {
    throw error;
  }
}
