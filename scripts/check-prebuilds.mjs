#!/usr/bin/env node
// Before `npm publish`: the package must carry a prebuilt addon for Linux x64 (made by
// `npm run make-prebuilds`), so that installs where dependency install scripts are blocked (npm's
// allowScripts, pnpm) still load the native core. Exits 1 naming what is missing.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const addon = path.join(root, 'prebuilds', 'linux-x64', 'monosemantic.napi.node');
if (!existsSync(addon)) {
  console.error(`monosemantic: ${addon} is missing: run \`npm run make-prebuilds\` on Linux x64 before publishing`);
  process.exit(1);
}
