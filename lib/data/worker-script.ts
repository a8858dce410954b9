/**
 * Where a worker thread's compiled module is: beside the calling module in the package
 * (dist/lib/data), or, when the caller runs from its TypeScript source (the tests), the build's
 * copy under dist/. Worker threads load JavaScript only.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { packageRoot } from '../native/load.js';

/** The URL of `dist/lib/data/<fileName>` (e.g. 'tokenize-worker.js'), or null when it has not been built. */
export function workerScript(fileName: string): URL | null {
  const beside = new URL(`./${fileName}`, import.meta.url);
  if (existsSync(fileURLToPath(beside))) return beside;
  const built = path.join(packageRoot(), 'dist', 'lib', 'data', fileName);
  return existsSync(built) ? pathToFileURL(built) : null;
}
