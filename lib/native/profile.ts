/**
 * MONOSEMANTIC_PROFILE=1: a per-operation time profile of the native addon, printed to stderr when
 * the process exits. Every call into the addon is timed from the call until it returns (synchronous
 * calls: tensor creation, copies, frees) or until its promise settles (the backend's operations,
 * CPU operations complete when they settle; CUDA ones only with MONOSEMANTIC_CUDA_ASYNC=0), and
 * summed per function name. Settlement time includes waiting behind other operations in the addon's
 * queue, so with concurrent chains (a prefetching data source) the rows overlap; a single chain's
 * rows add up to its wall time. By default a CUDA operation settles once queued: its row is the cost
 * of queueing it, and the GPU's time shows up in whatever waits next (a read, a statistic); run with
 * MONOSEMANTIC_CUDA_ASYNC=0 to see each operation's time to completion.
 */
import type { NativeAddon } from './binding.js';

interface Entry {
  calls: number;
  totalMs: number;
  maxMs: number;
}

const entries = new Map<string, Entry>();
const started = performance.now();

function record(name: string, ms: number): void {
  const e = entries.get(name);
  if (e) {
    e.calls += 1;
    e.totalMs += ms;
    e.maxMs = Math.max(e.maxMs, ms);
  } else {
    entries.set(name, { calls: 1, totalMs: ms, maxMs: ms });
  }
}

/** The profile so far: one row per addon function, largest total first. */
export function profileTable(): string {
  const rows = [...entries.entries()].sort((a, b) => b[1].totalMs - a[1].totalMs);
  const wall = performance.now() - started;
  const lines = [
    `monosemantic profile: ${wall.toFixed(0)} ms since the addon loaded`,
    `${'operation'.padEnd(26)} ${'calls'.padStart(9)} ${'total ms'.padStart(11)} ${'mean us'.padStart(10)} ${'max ms'.padStart(9)} ${'of wall'.padStart(8)}`,
  ];
  for (const [name, e] of rows) {
    lines.push(
      `${name.padEnd(26)} ${String(e.calls).padStart(9)} ${e.totalMs.toFixed(1).padStart(11)} ${((e.totalMs / e.calls) * 1e3).toFixed(1).padStart(10)} ${e.maxMs.toFixed(2).padStart(9)} ${`${((100 * e.totalMs) / wall).toFixed(1)}%`.padStart(8)}`,
    );
  }
  return lines.join('\n');
}

/** `addon` with every function timed; the table is printed to stderr at exit (unless printAtExit is false). */
export function profiled(addon: NativeAddon, printAtExit = true): NativeAddon {
  if (printAtExit) process.once('exit', () => process.stderr.write(`${profileTable()}\n`));
  const wrapped = new Map<PropertyKey, unknown>();
  return new Proxy(addon, {
    get(target, key, receiver) {
      const value: unknown = Reflect.get(target, key, receiver);
      if (typeof value !== 'function' || typeof key !== 'string') return value;
      let fn = wrapped.get(key);
      if (!fn && /^[A-Z]/.test(key)) {
        // A class (NativeTensor): time construction, i.e. the device allocation.
        fn = new Proxy(value, {
          construct(cls, args, newTarget) {
            const t0 = performance.now();
            const object = Reflect.construct(cls, args, newTarget) as object;
            record(`new ${key}`, performance.now() - t0);
            return object;
          },
        });
        wrapped.set(key, fn);
      }
      if (!fn) {
        const original = value as (...args: unknown[]) => unknown;
        fn = function timed(this: unknown, ...args: unknown[]): unknown {
          const t0 = performance.now();
          const result = original.apply(target, args);
          if (result instanceof Promise) {
            const settle = () => record(key, performance.now() - t0);
            result.then(settle, settle);
          } else {
            record(key, performance.now() - t0);
          }
          return result;
        };
        wrapped.set(key, fn);
      }
      return fn;
    },
  });
}
