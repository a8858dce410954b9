/**
 * Model folders. The package's own models (models/, trained by `monosemantic lm train` on the
 * default corpus): "a" is the default wherever a command takes a model; "b" is its twin from
 * another seed. And the check, shared by the tokenizer and model loaders, that a folder given as a
 * model is one.
 */
import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';

import { packageRoot } from '../native/load.js';

export function shippedModelDir(name: 'a' | 'b'): string {
  return path.join(packageRoot(), 'models', name);
}

export function defaultModelDir(): string {
  return shippedModelDir('a');
}

/**
 * A model as a command or a run config names it: a folder, or `a` / `b`, the package's models
 * (when no folder of that name is in the working directory).
 */
export function modelDirOf(value: string): string {
  return (value === 'a' || value === 'b') && !existsSync(value) ? shippedModelDir(value) : value;
}

/**
 * Why `dir` cannot be a model folder ('no such folder', 'not a folder'), or null when it is a
 * folder (or cannot be looked at: the loader's read then says why). Checked first, so that a
 * mistyped folder is not reported as a missing file inside it.
 */
export async function modelFolderProblem(dir: string): Promise<string | null> {
  if (typeof dir !== 'string' || dir === '') throw new TypeError('dir must be a non-empty string');
  try {
    return (await stat(dir)).isDirectory() ? null : 'not a folder';
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ENOTDIR' ? 'no such folder' : null;
  }
}
