#!/usr/bin/env node
// Builds the native parts and lays them out as prebuilt binaries, in the prebuildify layout that
// node-gyp-build reads at load time:
//   prebuilds/<platform>-<arch>/monosemantic.napi.node   the core addon (Node-API, any Node >= 20)
//   prebuilds/<platform>-<arch>/libmonosemantic_cuda.so  the CUDA backend, when it was built
// Run it (`npm run make-prebuilds`) on each release platform before `npm publish`.
//
// `--arch arm64` on Linux x64 cross-builds the CPU-only core for Linux arm64 with node-gyp
// (binding.gyp) in a temporary folder, with the cross compiler named by CC/CXX (default
// aarch64-linux-gnu-gcc/g++, Debian's g++-aarch64-linux-gnu) and this Node.js's headers (Node-API
// headers do not depend on the architecture). scripts/test-arm64.sh runs the CPU tests on the result.
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { CUDA_LIBRARIES, findNodeGyp, NODE_HEADERS_LOOKED_IN, nodeHeadersDir } from './node-gyp-tools.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: flags } = parseArgs({ options: { arch: { type: 'string', default: process.arch } } });

/** A build that cannot be made: its message is printed alone, and the script exits with 1. */
class BuildError extends Error {}

function fail(message) {
  throw new BuildError(message);
}

/** The release folder of a native build for this machine (cmake-js, or node-gyp without CMake). */
function buildHere() {
  const built = spawnSync(process.execPath, [path.join(root, 'scripts/install.mjs'), '--force'], { cwd: root, stdio: 'inherit' });
  if (built.status !== 0) process.exit(built.status ?? 1);
  return path.join(root, 'build', 'Release');
}

const CROSS_TOOLS = { arm64: 'aarch64-linux-gnu' };

/** Lays out a release folder's binaries as the prebuilt binaries of `platformArch`. */
function layOut(release, platformArch) {
  const target = path.join(root, 'prebuilds', platformArch);
  rmSync(target, { recursive: true, force: true }); // nothing of an earlier build (a CUDA library this one lacks) ships
  mkdirSync(target, { recursive: true });
  copyFileSync(path.join(release, 'monosemantic.node'), path.join(target, 'monosemantic.napi.node'));
  for (const lib of CUDA_LIBRARIES) {
    if (existsSync(path.join(release, lib))) copyFileSync(path.join(release, lib), path.join(target, lib));
  }
  console.error(`monosemantic: prebuilt binaries written to ${target}`);
}

/** A CPU-only node-gyp build for `arch`, made in a temporary copy of the sources, laid out as its prebuilt binary. */
function crossBuild(arch) {
  const triple = CROSS_TOOLS[arch];
  if (process.platform !== 'linux' || triple === undefined) fail(`--arch ${arch}: cross builds are made on Linux, for ${Object.keys(CROSS_TOOLS).join(', ')}`);
  const nodeGyp = findNodeGyp();
  if (!nodeGyp) fail('node-gyp not found (npm ships it; run this through `npm run make-prebuilds -- --arch ...`)');
  const nodedir = nodeHeadersDir();
  if (nodedir === null) fail(`no Node.js headers in ${NODE_HEADERS_LOOKED_IN} (set npm_config_nodedir)`);
  const env = {
    ...process.env,
    CC: process.env.CC ?? `${triple}-gcc`,
    CXX: process.env.CXX ?? `${triple}-g++`,
    AR: process.env.AR ?? `${triple}-ar`,
    LINK: process.env.LINK ?? process.env.CXX ?? `${triple}-g++`,
  };
  if (spawnSync(env.CXX, ['--version'], { stdio: 'ignore' }).status !== 0) fail(`the cross compiler ${env.CXX} was not found (Debian: apt install g++-${triple})`);
  // A CC/CXX left in the environment for native builds (CI images set CXX=g++) would build for this machine.
  const machine = spawnSync(env.CXX, ['-dumpmachine'], { encoding: 'utf8' }).stdout?.trim() ?? '';
  if (!machine.startsWith(triple.split('-')[0])) fail(`CXX=${env.CXX} builds for ${machine || 'an unknown target'}, not ${triple}: unset CC/CXX/LINK or point them at the ${triple} compilers`);
  // node-gyp builds in ./build, which holds this machine's own build: the sources go to a folder of their own.
  const work = mkdtempSync(path.join(os.tmpdir(), `monosemantic-${arch}-`));
  try {
    for (const entry of ['binding.gyp', 'native', 'scripts/gyp-sources.cjs']) cpSync(path.join(root, entry), path.join(work, entry), { recursive: true });
    symlinkSync(path.join(root, 'node_modules'), path.join(work, 'node_modules')); // node-addon-api's headers
    const built = spawnSync(process.execPath, [nodeGyp, 'rebuild', `--arch=${arch}`, `--nodedir=${nodedir}`, `--jobs=${os.availableParallelism()}`], { cwd: work, stdio: 'inherit', env });
    if (built.status !== 0) fail(`the ${arch} build failed`);
    layOut(path.join(work, 'build', 'Release'), `${process.platform}-${arch}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

try {
  if (flags.arch === process.arch) layOut(buildHere(), `${process.platform}-${process.arch}`);
  else crossBuild(flags.arch);
} catch (error) {
  if (!(error instanceof BuildError)) throw error;
  console.error(`monosemantic: ${error.message}`);
  process.exit(1);
}
