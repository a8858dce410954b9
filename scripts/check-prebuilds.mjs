#!/usr/bin/env node
// Before `npm publish`: the package must carry prebuilt addons for Linux x64 (`npm run
// make-prebuilds` there) and Linux arm64 (`npm run make-prebuilds -- --arch arm64`, a CPU-only
// cross build), so that installs where dependency install scripts are blocked (npm's allowScripts,
// pnpm) still load the native core. Exits 1 naming what is missing.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const required = [
  ['linux-x64', '`npm run make-prebuilds` on Linux x64'],
  ['linux-arm64', '`npm run make-prebuilds -- --arch arm64` on Linux x64 (a cross build)'],
];
let missing = false;
for (const [platformArch, how] of required) {
  const addon = path.join(root, 'prebuilds', platformArch, 'monosemantic.napi.node');
  if (existsSync(addon)) continue;
  console.error(`monosemantic: ${addon} is missing: run ${how} before publishing`);
  missing = true;
}
if (missing) process.exit(1);
