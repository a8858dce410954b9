/** What `monosemantic doctor` reports: the CPU, the CUDA backend, the GPUs, and why not CUDA. */
import { type BackendStatus, backendStatus, nativeAddon } from './backend.js';
import { checkEnvironment } from './environment.js';
import type { NativeDeviceInfo } from './native/binding.js';
import { cudaLibraryPath, loadAddon } from './native/load.js';

export interface DoctorReport {
  node: string;
  platform: string;
  addonPath: string;
  /**
   * active is null, and error says why, when no backend can be used: MONOSEMANTIC_BACKEND is not
   * a backend, or names CUDA where CUDA cannot be used. Every command then fails with that error.
   */
  backend: { requested: string; active: string | null; error?: string };
  cpu: { model: string; simd: string; simdDetected: string; threads: number };
  cuda: {
    loaded: boolean;
    libraryPath: string;
    reason: string | null;
    driverVersion?: string;
    runtimeVersion?: string;
    devices?: NativeDeviceInfo[];
    /** CUDA operations settle once queued (the default; MONOSEMANTIC_CUDA_ASYNC=0 turns it off). */
    asyncOps?: boolean;
    hopperGemm?: boolean;
  };
  /** The MONOSEMANTIC_* variables set, as NAME=value. */
  settings: string[];
  /** MONOSEMANTIC_* variables that are not the package's (mistyped ones, say). */
  unknownSettings: string[];
}

function settingsInEffect(): { settings: string[]; unknownSettings: string[] } {
  const settings = Object.entries(process.env)
    .filter(([name, value]) => name.startsWith('MONOSEMANTIC_') && value !== undefined && value !== '')
    .map(([name, value]) => `${name}=${value}`)
    .sort();
  return { settings, unknownSettings: checkEnvironment().unknown };
}

/** Which products the Hopper GEMM takes under a MONOSEMANTIC_CUDA_GEMM value (checked when the backends start). */
function hopperGemmUse(value: string | undefined): string {
  if (value === 'wgmma') return 'wgmma for every product: MONOSEMANTIC_CUDA_GEMM=wgmma';
  if (value === 'mma') return 'mma.sync for every product: MONOSEMANTIC_CUDA_GEMM=mma';
  return 'wgmma for the long-K plain products, mma.sync for the rest';
}

/**
 * What doctor can say without a backend: the error, the platform and the settings. All of
 * `doctor --json` when the addon itself does not load; the start of the report when it loads but
 * the backends cannot be set up.
 */
export function doctorFailure(error: unknown): Pick<DoctorReport, 'node' | 'platform' | 'backend' | 'settings' | 'unknownSettings'> & { addonPath: null } {
  const message = error instanceof Error ? error.message : String(error);
  return {
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    addonPath: null,
    backend: { requested: process.env.MONOSEMANTIC_BACKEND ?? '', active: null, error: message },
    ...settingsInEffect(),
  };
}

/** 12080 -> "12.8", 13000 -> "13.0" (CUDA's version encoding). */
export function cudaVersionString(v: number): string {
  return `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;
}

export function doctorReport(): DoctorReport {
  let status: BackendStatus;
  try {
    status = backendStatus();
  } catch (error) {
    // The backends could not be set up (the message says why): the rest is still reported, from
    // the addon loaded directly (it loads as it did for the backends; an addon that does not load
    // leaves nothing to report, and its error is thrown).
    const { addon, path: addonPath } = loadAddon();
    const { node, platform, backend, settings, unknownSettings } = doctorFailure(error);
    const cuda = { loaded: false, libraryPath: cudaLibraryPath(addonPath), reason: backend.error! };
    return { node, platform, addonPath, backend, cpu: addon.cpuInfo(), cuda, settings, unknownSettings };
  }
  const addon = nativeAddon();
  const report: DoctorReport = {
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    addonPath: status.addonPath,
    backend: { requested: status.requested, active: status.active },
    cpu: addon.cpuInfo(),
    cuda: { loaded: status.cuda.available, libraryPath: status.cuda.libraryPath, reason: status.cuda.reason },
    ...settingsInEffect(),
  };
  if (status.cuda.available) {
    const info = addon.backendInfo('cuda');
    report.cuda.driverVersion = cudaVersionString(info.runtime.driverVersion);
    report.cuda.runtimeVersion = cudaVersionString(info.runtime.runtimeVersion);
    report.cuda.devices = info.devices;
    report.cuda.asyncOps = info.asyncOps;
    report.cuda.hopperGemm = info.runtime.hopperGemm;
  }
  return report;
}

export function formatDoctorReport(r: DoctorReport): string {
  const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;
  const lines = [
    `monosemantic doctor`,
    `  node          ${r.node} (${r.platform})`,
    `  addon         ${r.addonPath}`,
    r.backend.active === null ? `  backend       none: ${r.backend.error}` : `  backend       ${r.backend.active} (requested: ${r.backend.requested})`,
    `  cpu           ${r.cpu.model || 'unknown model'}`,
    `  cpu simd      ${r.cpu.simd} (detected: ${r.cpu.simdDetected})`,
    `  cpu threads   ${r.cpu.threads}`,
    `  cuda library  ${r.cuda.loaded ? 'loaded' : 'not in use'} (${r.cuda.libraryPath})`,
  ];
  if (r.cuda.loaded) {
    lines.push(`  cuda driver   ${r.cuda.driverVersion}`, `  cuda runtime  ${r.cuda.runtimeVersion}`);
    lines.push(`  cuda ops      ${r.cuda.asyncOps ? 'queued from the calling thread' : 'complete when they settle (MONOSEMANTIC_CUDA_ASYNC=0)'}`);
    lines.push(`  cuda gemm     ${r.cuda.hopperGemm ? `wgmma + TMA and mma.sync (${hopperGemmUse(process.env.MONOSEMANTIC_CUDA_GEMM)})` : 'mma.sync (no sm_90a device code for this GPU)'}`);
    for (const [i, d] of (r.cuda.devices ?? []).entries()) {
      lines.push(`  gpu ${i}         ${d.name}, ${gib(d.totalBytes)} (${gib(d.freeBytes)} free), ${d.multiprocessors} SMs, sm_${d.computeCapability.replace('.', '')}`);
    }
  } else if (r.backend.active !== null) {
    lines.push(`  why not cuda  ${r.cuda.reason}`); // else the backend line has said why
  }
  lines.push(`  settings      ${r.settings.length > 0 ? r.settings.join(' ') : 'none (no MONOSEMANTIC_* variable set)'}`);
  for (const line of r.unknownSettings) lines.push(`  warning       ${line}`);
  return lines.join('\n');
}

/** The machine a backend computes on, in words: the GPU's name, or the CPU with its threads and SIMD level. */
export function deviceDescription(backend: 'cpu' | 'cuda'): string {
  const addon = nativeAddon();
  if (backend === 'cuda') {
    const devices = addon.backendInfo('cuda').devices;
    return devices[0]?.name ?? 'an NVIDIA GPU';
  }
  const cpu = addon.cpuInfo();
  return `${cpu.model || 'a CPU'} (${cpu.threads} threads, ${cpu.simd})`;
}
