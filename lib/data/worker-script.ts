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

/**
 * The Node.js options a worker thread starts with: the process's, but for those that apply only
 * to the main script (`--input-type`, which a worker refuses: `node --input-type=module -e ...`).
 */
export function workerExecArgv(): string[] {
  const out: string[] = [];
  const args = process.execArgv;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--input-type') i++; // its value follows
    else if (!args[i]!.startsWith('--input-type=')) out.push(args[i]!);
  }
  return out;
}
