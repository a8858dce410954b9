#!/usr/bin/env node
// Builds the native parts and lays them out as prebuilt binaries for this platform, in the
// prebuildify layout that node-gyp-build reads at load time:
//   prebuilds/<platform>-<arch>/monosemantic.napi.node   the core addon (Node-API, any Node >= 20)
//   prebuilds/<platform>-<arch>/libmonosemantic_cuda.so  the CUDA backend, when it was built
// Run it (`npm run make-prebuilds`) on each release platform before `npm publish`.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const built = spawnSync(process.execPath, [path.join(root, 'scripts/install.mjs'), '--force'], { cwd: root, stdio: 'inherit' });
if (built.status !== 0) process.exit(built.status ?? 1);

const release = path.join(root, 'build', 'Release');
const target = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
rmSync(target, { recursive: true, force: true }); // nothing of an earlier build (a CUDA library this one lacks) ships
mkdirSync(target, { recursive: true });
copyFileSync(path.join(release, 'monosemantic.node'), path.join(target, 'monosemantic.napi.node'));
for (const lib of ['libmonosemantic_cuda.so', 'libmonosemantic_cuda.dylib', 'monosemantic_cuda.dll']) {
  if (existsSync(path.join(release, lib))) copyFileSync(path.join(release, lib), path.join(target, lib));
}
console.error(`monosemantic: prebuilt binaries written to ${target}`);
