#!/usr/bin/env node
// Builds the native parts at install time, with no downloads:
//   1. a prebuilt binary that fits this platform (prebuilds/<platform>-<arch>/) is used as is;
//   2. otherwise cmake-js builds the core addon and, when nvcc is found, the CUDA backend;
//   3. if CMake is missing (or its build fails), node-gyp builds the CPU-only core from binding.gyp,
//      with the headers that ship with this Node.js (it is not run where there are none).
// `--force` skips step 1 (used by `npm run build:native` after editing native code).
// MONOSEMANTIC_CUDA=0 builds without the CUDA backend even when nvcc is present. Every CMake build
// configures again with the current choice, so a rebuild can turn the CUDA backend on or off; a
// CUDA library left from an earlier build is removed first (relinked when it is built again).
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import os from 'node:os';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { CUDA_LIBRARIES, findNodeGyp, NODE_HEADERS_LOOKED_IN, nodeHeadersDir } from './node-gyp-tools.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const force = process.argv.includes('--force');

function log(message) {
  console.error(`monosemantic: ${message}`);
}

function run(command, args, env = {}) {
  log(`${path.basename(command)} ${args.join(' ')}`);
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
  return result.status === 0;
}

function hasCommand(command) {
  return spawnSync(command, ['--version'], { stdio: 'ignore' }).status === 0;
}

/** Whether prebuilds/ holds an addon for this platform (a build of our own in build/ does not count). */
function prebuiltFits() {
  try {
    const nodeGypBuild = require('node-gyp-build');
    const found = nodeGypBuild.resolve(root);
    return path.relative(path.join(root, 'prebuilds'), found).split(path.sep)[0] !== '..';
  } catch {
    return false;
  }
}

/** Removes build/Release's CUDA library, so that only this build's can be there afterwards. */
function removeBuiltCudaLibrary() {
  for (const name of CUDA_LIBRARIES) rmSync(path.join(root, 'build', 'Release', name), { force: true });
}

function buildWithCmake() {
  let cmakeJs;
  try {
    cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  } catch {
    return false;
  }
  if (!hasCommand('cmake')) {
    log('cmake not found; skipping the CMake build (no CUDA backend)');
    return false;
  }
  const jobs = ['--parallel', String(os.availableParallelism())];
  const build = (cuda) => {
    removeBuiltCudaLibrary();
    const flag = `--CDMONOSEMANTIC_CUDA=${cuda ? 'ON' : 'OFF'}`;
    return run(process.execPath, [cmakeJs, 'configure', flag]) && run(process.execPath, [cmakeJs, 'build', ...jobs]);
  };
  const cuda = process.env.MONOSEMANTIC_CUDA !== '0';
  if (build(cuda)) return true;
  if (cuda) {
    log('the CMake build failed; retrying without the CUDA backend');
    return build(false);
  }
  return false;
}

function buildWithNodeGyp() {
  const nodedir = nodeHeadersDir();
  if (nodedir === null) {
    log(`node-gyp: no Node.js headers in ${NODE_HEADERS_LOOKED_IN} and no npm_config_nodedir; not building with node-gyp (it would download them)`);
    return false;
  }
  const nodeGyp = findNodeGyp();
  if (!nodeGyp) {
    log('node-gyp not found (npm ships it; run the install through npm)');
    return false;
  }
  removeBuiltCudaLibrary(); // a CPU-only build
  return run(process.execPath, [nodeGyp, 'rebuild', `--nodedir=${nodedir}`]);
}

if (!force && prebuiltFits()) {
  log('using the prebuilt native addon');
  process.exit(0);
}
if (buildWithCmake() || buildWithNodeGyp()) process.exit(0);
log(
  'could not build the native addon. It needs a C++17 compiler (g++ >= 9 or clang >= 10) and ' +
    'Python 3 for node-gyp; CMake >= 3.18 and the CUDA toolkit (nvcc) add the CUDA backend. ' +
    'Install them, then run `npm run build:native` in ' +
    root,
);
process.exit(1);
