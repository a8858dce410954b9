#!/usr/bin/env node
// Builds the native parts at install time, with no downloads:
//   1. a prebuilt binary that fits this platform (prebuilds/<platform>-<arch>/) is used as is;
//   2. otherwise cmake-js builds the core addon and, when nvcc is found, the CUDA backend;
//   3. if CMake is missing (or its build fails), node-gyp builds the CPU-only core from binding.gyp.
// `--force` skips step 1 (used by `npm run build:native` after editing native code).
// MONOSEMANTIC_CUDA=0 builds without the CUDA backend even when nvcc is present.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

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

function prebuiltFits() {
  try {
    const nodeGypBuild = require('node-gyp-build');
    nodeGypBuild.resolve(root);
    return true;
  } catch {
    return false;
  }
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
  const cudaOff = process.env.MONOSEMANTIC_CUDA === '0';
  const args = ['compile', ...jobs, ...(cudaOff ? ['--CDMONOSEMANTIC_CUDA=OFF'] : [])];
  if (run(process.execPath, [cmakeJs, ...args])) return true;
  if (!cudaOff) {
    log('the CMake build failed; retrying without the CUDA backend');
    return run(process.execPath, [cmakeJs, 'rebuild', ...jobs, '--CDMONOSEMANTIC_CUDA=OFF']);
  }
  return false;
}

function buildWithNodeGyp() {
  // Use the headers that ship with this Node.js (<prefix>/include/node) so node-gyp downloads nothing.
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  const local = existsSync(path.join(prefix, 'include', 'node', 'common.gypi'));
  const args = ['rebuild', ...(local && !process.env.npm_config_nodedir ? [`--nodedir=${prefix}`] : [])];
  // npm tells lifecycle scripts where its bundled node-gyp lives; outside npm, look beside node.
  const bundled = [
    process.env.npm_config_node_gyp,
    path.join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ].find((candidate) => candidate && existsSync(candidate));
  if (bundled) return run(process.execPath, [bundled, ...args]);
  return run(process.platform === 'win32' ? 'npx.cmd' : 'npx', ['--no-install', 'node-gyp', ...args]);
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
