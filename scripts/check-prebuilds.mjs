#!/usr/bin/env node
// Before `npm publish`: the package must carry prebuilt addons for Linux x64, with the CUDA
// backend (`npm run make-prebuilds` there, with nvcc), and for Linux arm64 (`npm run
// make-prebuilds -- --arch arm64`, a CPU-only cross build), so that installs where dependency
// install scripts are blocked (npm's allowScripts, pnpm) still load the native core. Exits 1
// naming what is missing.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// [folder, file, how it is made]: Linux x64 with the CUDA backend (built where nvcc is installed).
const required = [
  ['linux-x64', 'monosemantic.napi.node', '`npm run make-prebuilds` on Linux x64'],
  ['linux-x64', 'libmonosemantic_cuda.so', '`npm run make-prebuilds` on Linux x64 with the CUDA toolkit (nvcc) installed'],
  ['linux-arm64', 'monosemantic.napi.node', '`npm run make-prebuilds -- --arch arm64` on Linux x64 (a cross build)'],
];
let missing = false;
for (const [platformArch, file, how] of required) {
  const binary = path.join(root, 'prebuilds', platformArch, file);
  if (existsSync(binary)) continue;
  console.error(`monosemantic: ${binary} is missing: run ${how} before publishing`);
  missing = true;
}
if (missing) process.exit(1);
