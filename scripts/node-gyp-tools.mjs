// Where node-gyp and the Node.js headers are, without downloading either, and the CUDA library's
// file names: shared by the install script (a CPU-only build from binding.gyp) and make-prebuilds
// (a cross build for another arch, and the prebuilt binaries' layout).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

/** The CUDA backend's library as each platform names it (build/Release and prebuilds/<platform>-<arch>). */
export const CUDA_LIBRARIES = ['libmonosemantic_cuda.so', 'libmonosemantic_cuda.dylib', 'monosemantic_cuda.dll'];

const require = createRequire(import.meta.url);
const prefix = path.resolve(path.dirname(process.execPath), '..');

/**
 * The folder node-gyp's --nodedir takes: npm_config_nodedir, else this Node.js's prefix where it
 * ships its headers (<prefix>/include/node); null where there are none (node-gyp would download them).
 */
export function nodeHeadersDir() {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  return existsSync(path.join(prefix, 'include', 'node', 'common.gypi')) ? prefix : null;
}

/** Where the headers were looked for, for a message. */
export const NODE_HEADERS_LOOKED_IN = path.join(prefix, 'include', 'node');

/**
 * node-gyp's entry script: where npm says (lifecycle scripts), beside node, or among the installed
 * packages; undefined where none is found. Never npx, which may go to the registry.
 */
export function findNodeGyp() {
  const installed = (() => {
    try {
      return require.resolve('node-gyp/bin/node-gyp.js');
    } catch {
      return undefined;
    }
  })();
  return [process.env.npm_config_node_gyp, path.join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'), installed].find(
    (candidate) => candidate && existsSync(candidate),
  );
}
