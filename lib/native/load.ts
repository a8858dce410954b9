/**
 * Finding and loading the core addon. Prebuilt binaries are looked up in the prebuildify layout
 * (prebuilds/<platform>-<arch>/) through node-gyp-build, then local builds (build/Release,
 * build/Debug). When nothing fits, the error says what was looked for and how to build it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { MonosemanticError } from '../errors.js';
import type { NativeAddon } from './binding.js';

const require = createRequire(import.meta.url);

/** The package's root folder (the one holding monosemantic's package.json). */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = path.join(dir, 'package.json');
    if (existsSync(manifest) && JSON.parse(readFileSync(manifest, 'utf8')).name === 'monosemantic') return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('monosemantic: cannot find the package root above ' + import.meta.url);
    dir = parent;
  }
}

export interface LoadedAddon {
  addon: NativeAddon;
  /** Absolute path of the .node file that was loaded. */
  path: string;
}

export function loadAddon(root = packageRoot()): LoadedAddon {
  const nodeGypBuild = require('node-gyp-build') as { resolve(dir: string): string };
  let addonPath: string;
  try {
    addonPath = nodeGypBuild.resolve(root);
  } catch {
    const tag = `${process.platform}-${process.arch}`;
    throw new MonosemanticError(
      'E_NO_BINARY',
      'load',
      `no monosemantic native addon fits this machine (${tag}, Node-API 8, Node ${process.version}). ` +
        `Looked for prebuilt binaries in ${path.join(root, 'prebuilds', tag)} and for a local build in ` +
        `${path.join(root, 'build', 'Release')} and ${path.join(root, 'build', 'Debug')}. ` +
        `Build it from source with \`npm run build:native\` in ${root} ` +
        '(needs a C++17 compiler and Python 3; CMake and the CUDA toolkit add the CUDA backend).',
    );
  }
  return { addon: require(addonPath) as NativeAddon, path: addonPath };
}

/** Where the CUDA backend library would sit next to the addon (or MONOSEMANTIC_CUDA_LIBRARY). */
export function cudaLibraryPath(addonPath: string): string {
  const override = process.env.MONOSEMANTIC_CUDA_LIBRARY;
  if (override) return path.resolve(override);
  const file =
    process.platform === 'win32'
      ? 'monosemantic_cuda.dll'
      : process.platform === 'darwin'
        ? 'libmonosemantic_cuda.dylib'
        : 'libmonosemantic_cuda.so';
  return path.join(path.dirname(addonPath), file);
}

/** Why the CUDA backend is not there when its library is missing: a prebuilt set without one, or a build made without nvcc. */
export function missingCudaLibraryReason(addonPath: string, libraryPath: string): string {
  const folder = path.dirname(addonPath);
  // Only the library that would sit beside a prebuilt addon: a MONOSEMANTIC_CUDA_LIBRARY that names a missing file is that.
  if (!process.env.MONOSEMANTIC_CUDA_LIBRARY && path.basename(path.dirname(folder)) === 'prebuilds') {
    return `the prebuilt binaries for ${path.basename(folder)} have no CUDA backend (no ${libraryPath}); \`npm run build:native\` in the package builds one where the CUDA toolkit is installed, see README`;
  }
  return `the CUDA backend library was not found at ${libraryPath} (this build has no CUDA backend: it is built when nvcc is present, see README)`;
}
