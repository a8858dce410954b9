/**
 * Backend choice from MONOSEMANTIC_BACKEND and the CUDA library's presence. Each case re-imports
 * lib/backend.ts fresh so its lazy initialisation runs again under the new environment.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';

import { copyFileSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { packageRoot } from '../../lib/native/load.js';

async function freshBackend() {
  vi.resetModules();
  return import('../../lib/backend.js');
}

const saved = { ...process.env };
afterEach(() => {
  process.env = { ...saved };
});

describe('backend selection', () => {
  it('forcing cpu keeps the reason', async () => {
    process.env.MONOSEMANTIC_BACKEND = 'cpu';
    const { backendStatus } = await freshBackend();
    const s = backendStatus();
    expect(s.requested).toBe('cpu');
    expect(s.active).toBe('cpu');
    expect(s.cuda.available).toBe(false);
    expect(s.cuda.reason).toBe('MONOSEMANTIC_BACKEND=cpu');
  });

  it('falls back to the CPU when the CUDA library is missing, saying where it looked', async () => {
    process.env.MONOSEMANTIC_CUDA_LIBRARY = '/nonexistent/libmonosemantic_cuda.so';
    const { backendStatus, resolveBackend } = await freshBackend();
    const s = backendStatus();
    expect(s.active).toBe('cpu');
    expect(s.cuda.reason).toMatch(/not found at \/nonexistent\/libmonosemantic_cuda.so/);
    expect(() => resolveBackend('cuda')).toThrow(/CUDA backend is not available: .*not found/);
  });

  it('falls back to the CPU when the CUDA library fails to load, keeping the loader message', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'monosemantic-'));
    const bogus = path.join(dir, 'libmonosemantic_cuda.so');
    writeFileSync(bogus, 'not a shared library');
    process.env.MONOSEMANTIC_CUDA_LIBRARY = bogus;
    const { backendStatus } = await freshBackend();
    const s = backendStatus();
    expect(s.active).toBe('cpu');
    expect(s.cuda.reason).toContain(`could not load ${bogus}`);
  });

  it('forcing cuda where it cannot load is an error that says why', async () => {
    process.env.MONOSEMANTIC_BACKEND = 'cuda';
    process.env.MONOSEMANTIC_CUDA_LIBRARY = '/nonexistent/libmonosemantic_cuda.so';
    const { backendStatus, resolveBackend } = await freshBackend();
    expect(() => backendStatus()).toThrow(/MONOSEMANTIC_BACKEND=cuda, but CUDA cannot be used: .*not found/);
    expect(() => resolveBackend()).toThrow(/MONOSEMANTIC_BACKEND=cuda, but CUDA cannot be used: .*not found/);
    expect(resolveBackend('cpu')).toBe('cpu'); // an explicit CPU backend (--backend cpu) still works
  });

  it('rejects an unknown MONOSEMANTIC_BACKEND', async () => {
    process.env.MONOSEMANTIC_BACKEND = 'tpu';
    const { backendStatus } = await freshBackend();
    expect(() => backendStatus()).toThrow(/MONOSEMANTIC_BACKEND must be 'auto', 'cpu' or 'cuda' \(got 'tpu'\)/);
  });

  it('rejects a mistyped value of any setting when the backends start, and warns once about an unknown name', async () => {
    process.env.MONOSEMANTIC_SIMD = 'AVX2';
    let { backendStatus } = await freshBackend();
    expect(() => backendStatus()).toThrow(/^MONOSEMANTIC_SIMD must be 'avx512', 'avx2' or 'scalar' \(got 'AVX2'\)$/);
    delete process.env.MONOSEMANTIC_SIMD;
    process.env.MONOSEMANTIC_THREAD = '1';
    const warned = vi.spyOn(console, 'error').mockImplementation(() => {});
    try {
      ({ backendStatus } = await freshBackend());
      backendStatus();
      backendStatus();
      expect(warned.mock.calls).toEqual([['monosemantic: warning: MONOSEMANTIC_THREAD is not a monosemantic setting and is ignored (did you mean MONOSEMANTIC_THREADS?)']]);
    } finally {
      warned.mockRestore();
    }
  });
});

describe('finding the addon', () => {
  it('says what was looked for and how to build when no binary fits', async () => {
    const { loadAddon } = await import('../../lib/native/load.js');
    const empty = mkdtempSync(path.join(os.tmpdir(), 'monosemantic-empty-'));
    let error: unknown;
    try {
      loadAddon(empty);
    } catch (e) {
      error = e;
    }
    expect(error).toMatchObject({ code: 'E_NO_BINARY' });
    const message = (error as Error).message;
    expect(message).toContain(path.join(empty, 'prebuilds', `${process.platform}-${process.arch}`));
    expect(message).toContain(path.join(empty, 'build', 'Release'));
    expect(message).toContain('npm run build:native');
  });
});

describe('prebuilt binaries', () => {
  it('are found in prebuilds/<platform>-<arch>/ when there is no local build', async () => {
    const { loadAddon } = await import('../../lib/native/load.js');
    const { path: builtPath } = loadAddon();
    const root = mkdtempSync(path.join(os.tmpdir(), 'monosemantic-prebuilt-'));
    const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
    mkdirSync(dir, { recursive: true });
    copyFileSync(builtPath, path.join(dir, 'monosemantic.napi.node'));
    writeFileSync(path.join(root, 'package.json'), JSON.stringify({ name: 'monosemantic' }));
    const loaded = loadAddon(root);
    expect(loaded.path).toBe(path.join(dir, 'monosemantic.napi.node'));
    expect(loaded.addon.cpuInfo().threads).toBeGreaterThan(0);
  });

  it('without a CUDA library (the linux-arm64 set) say so, and how to build one', async () => {
    const { missingCudaLibraryReason } = await import('../../lib/native/load.js');
    const addon = path.join('/pkg', 'prebuilds', 'linux-arm64', 'monosemantic.napi.node');
    const library = path.join('/pkg', 'prebuilds', 'linux-arm64', 'libmonosemantic_cuda.so');
    expect(missingCudaLibraryReason(addon, library)).toBe(
      `the prebuilt binaries for linux-arm64 have no CUDA backend (no ${library}); \`npm run build:native\` in the package builds one where the CUDA toolkit is installed, see README`,
    );
    process.env.MONOSEMANTIC_CUDA_LIBRARY = '/nonexistent/libmonosemantic_cuda.so'; // named by the user: its own message, even beside a prebuilt addon
    expect(missingCudaLibraryReason(addon, '/nonexistent/libmonosemantic_cuda.so')).toMatch(/not found at \/nonexistent\/libmonosemantic_cuda\.so/);
    delete process.env.MONOSEMANTIC_CUDA_LIBRARY;
    expect(missingCudaLibraryReason(path.join('/pkg', 'build', 'Release', 'monosemantic.node'), '/pkg/build/Release/libmonosemantic_cuda.so')).toMatch(/not found at \/pkg\/build\/Release\/libmonosemantic_cuda\.so \(this build has no CUDA backend/);
  });
});

describe('the CUDA library on a machine without a GPU', () => {
  const library = path.join(packageRoot(), 'build', 'Release', 'libmonosemantic_cuda.so');
  const hasGpu = existsSync('/dev/nvidia0') || existsSync('/proc/driver/nvidia');
  it.runIf(existsSync(library) && !hasGpu)('loads, finds no driver, and leaves the CPU in use with that reason', async () => {
    const { backendStatus } = await freshBackend();
    const s = backendStatus();
    expect(s.cuda.libraryPath).toBe(library);
    expect(s.active).toBe('cpu');
    expect(s.cuda.reason).toMatch(/no NVIDIA driver \(libcuda\.so\.1\) found|stub|no CUDA device/);
  });
});
