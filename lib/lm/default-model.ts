/**
 * The package's own models (models/, trained by `monosemantic lm train` on the default corpus):
 * "a" is the default wherever a command takes a model; "b" is its twin from another seed.
 */
import path from 'node:path';

import { packageRoot } from '../native/load.js';

export function shippedModelDir(name: 'a' | 'b'): string {
  return path.join(packageRoot(), 'models', name);
}

export function defaultModelDir(): string {
  return shippedModelDir('a');
}
