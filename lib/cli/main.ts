#!/usr/bin/env node
/** The `monosemantic` command line: one file per command, thin over the library. */
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { Command } from 'commander';

import { MonosemanticError } from '../errors.js';
import { packageRoot } from '../native/load.js';
import { registerDoctor } from './doctor.js';

const version = JSON.parse(readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')).version as string;
const program = new Command('monosemantic').description('sparse autoencoders for language-model interpretability').version(version);
registerDoctor(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof MonosemanticError || error instanceof TypeError || error instanceof RangeError) {
    console.error(`monosemantic: ${error.message}`);
    process.exitCode = 1;
  } else {
    throw error;
  }
}
