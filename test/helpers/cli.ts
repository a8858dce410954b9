/** Running the `monosemantic` command line as users run it (the compiled bin), for the CLI tests. */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

import { packageRoot } from '../../lib/native/load.js';

export const cliBin = path.join(packageRoot(), 'dist/lib/cli/main.js');

/** Runs the bin with `args`, `env` on top of this process's environment, in `cwd` (default: this process's). */
export function runCli(args: string[], env: Record<string, string> = {}, cwd?: string) {
  if (!existsSync(cliBin)) throw new Error(`${cliBin} is missing: run \`npm run build:ts\` first (npm test does)`);
  return spawnSync(process.execPath, [cliBin, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, ...(cwd ? { cwd } : {}) });
}
