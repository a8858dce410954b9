/**
 * Backend choice. `auto` (the default) uses CUDA when its library loads and finds a usable GPU,
 * else the CPU; `MONOSEMANTIC_BACKEND=cpu|cuda` forces one. Why CUDA is not in use is kept for
 * `monosemantic doctor`. Everything here is initialised lazily, on first use.
 */
import { existsSync } from 'node:fs';

import { checkEnvironment } from './environment.js';
import { MonosemanticError } from './errors.js';
import type { NativeAddon } from './native/binding.js';
import { cudaLibraryPath, loadAddon, missingCudaLibraryReason } from './native/load.js';
import { profiled } from './native/profile.js';

export type BackendName = 'cpu' | 'cuda';
export type BackendRequest = 'auto' | BackendName;

export interface BackendStatus {
  /** What MONOSEMANTIC_BACKEND asked for ('auto' when unset). */
  requested: BackendRequest;
  /** The backend tensors go to when none is named. */
  active: BackendName;
  /** The .node file loaded. */
  addonPath: string;
  cuda: {
    available: boolean;
    libraryPath: string;
    /** Why CUDA is not available; null when it is. */
    reason: string | null;
  };
}

/** The addon, the backends' status, and (MONOSEMANTIC_BACKEND=cuda where CUDA cannot be used) the error the default backend gives. */
let state: { addon: NativeAddon; status: BackendStatus; cudaRequired: MonosemanticError | null } | null = null;

/** Throws on MONOSEMANTIC_* values the package does not accept; warns about unknown names. */
function checkSettings(): void {
  const { errors, unknown } = checkEnvironment();
  for (const line of unknown) console.error(`monosemantic: warning: ${line}`);
  if (errors.length > 0) throw new RangeError(errors.join('; '));
}

function requestedBackend(): BackendRequest {
  const value = (process.env.MONOSEMANTIC_BACKEND ?? '').trim().toLowerCase();
  return value === 'cpu' || value === 'cuda' ? value : 'auto';
}

function initialise(): NonNullable<typeof state> {
  checkSettings();
  const requested = requestedBackend();
  const { addon: loadedAddon, path: addonPath } = loadAddon();
  const addon = process.env.MONOSEMANTIC_PROFILE === '1' ? profiled(loadedAddon) : loadedAddon;
  addon.setErrorFactory(
    (code, op, deviceCode, message) => new MonosemanticError(code as MonosemanticError['code'], op, message, deviceCode),
  );
  const libraryPath = cudaLibraryPath(addonPath);
  let reason: string | null = null;
  if (requested === 'cpu') {
    reason = 'MONOSEMANTIC_BACKEND=cpu';
  } else if (!existsSync(libraryPath)) {
    reason = missingCudaLibraryReason(addonPath, libraryPath);
  } else {
    const loaded = addon.loadCuda(libraryPath);
    if (!loaded.ok) reason = loaded.reason ?? 'the CUDA backend failed to load';
  }
  // Asked for CUDA where it cannot be used: the default backend (and the status) fail saying why;
  // an explicit CPU backend (--backend cpu) still works.
  const cudaRequired =
    requested === 'cuda' && reason !== null ? new MonosemanticError('E_UNAVAILABLE', 'backend', `MONOSEMANTIC_BACKEND=cuda, but CUDA cannot be used: ${reason}`) : null;
  const available = reason === null;
  return {
    addon,
    status: { requested, active: available ? 'cuda' : 'cpu', addonPath, cuda: { available, libraryPath, reason } },
    cudaRequired,
  };
}

function ensure(): NonNullable<typeof state> {
  state ??= initialise();
  return state;
}

/** The loaded native addon (loads it, and chooses backends, on first call). */
export function nativeAddon(): NativeAddon {
  return ensure().addon;
}

/**
 * Waits until `backend` (default: the active one) has finished the work queued so far, and throws
 * the error of an earlier operation that failed asynchronously. CUDA operations settle once their
 * work is queued (unless MONOSEMANTIC_CUDA_ASYNC=0), so this is what timing them needs; reading a
 * tensor always waits for the work that writes it.
 */
export function synchronize(backend?: BackendName): void {
  nativeAddon().synchronize(resolveBackend(backend));
}

export function backendStatus(): BackendStatus {
  const { status: s, cudaRequired } = ensure();
  if (cudaRequired) throw cudaRequired;
  return { ...s, cuda: { ...s.cuda } };
}

/** Checks that `name` (default: the active backend) can be used, and returns it. */
export function resolveBackend(name?: BackendName): BackendName {
  const { status, cudaRequired } = ensure();
  if (name === undefined) {
    if (cudaRequired) throw cudaRequired;
    return status.active;
  }
  if (name === 'cpu') return 'cpu';
  if (name === 'cuda') {
    if (!status.cuda.available) {
      throw new MonosemanticError('E_UNAVAILABLE', 'backend', `the CUDA backend is not available: ${status.cuda.reason}`);
    }
    return 'cuda';
  }
  throw new TypeError(`backend must be 'cpu' or 'cuda' (got ${JSON.stringify(name)})`);
}
