/**
 * Host-side bookkeeping of when each feature last fired, and feature densities over windows,
 * built from the device's per-feature firing counts (read and reset at snapshot steps: a few
 * int32 per feature every few hundred steps, never per step).
 *
 * Dead features for resampling: with snapshots taken at steps R − W and R, a feature is dead at
 * R when it fired in none of the steps after R − W: lastFired ≤ R − W, where lastFired is the
 * step of the last snapshot whose counts showed a firing (0 for never).
 *
 * Densities: counts accumulate over a window of at least `windowSamples` inputs; when a window
 * closes, its densities become `lastDensity` (what metrics report and what the export's
 * sparsity file holds) and a new window starts.
 */

export interface FiringStatsState {
  lastFired: Int32Array;
  windowCounts: Float64Array;
  windowSamples: number;
  lastDensity: Float64Array | null;
  lastDensitySamples: number;
  totalCounts: Float64Array;
  totalSamples: number;
}

export interface DensitySummary {
  /** Features that did not fire in the last completed window. */
  dead: number;
  /** Features that fired, but with density below 1e-6, in the last completed window (as sae-eval and sae info count them: dead ones apart). */
  ultraLow: number;
  /** Inputs the window covered. */
  samples: number;
}

export class FiringStats {
  readonly dSae: number;
  readonly windowSamples: number;
  #s: FiringStatsState;

  constructor(dSae: number, windowSamples: number, state?: FiringStatsState) {
    this.dSae = dSae;
    this.windowSamples = windowSamples;
    this.#s = state ?? {
      lastFired: new Int32Array(dSae),
      windowCounts: new Float64Array(dSae),
      windowSamples: 0,
      lastDensity: null,
      lastDensitySamples: 0,
      totalCounts: new Float64Array(dSae),
      totalSamples: 0,
    };
    if (this.#s.lastFired.length !== dSae || this.#s.windowCounts.length !== dSae || this.#s.totalCounts.length !== dSae) {
      throw new RangeError(`firing statistics are for ${this.#s.lastFired.length} features, not ${dSae}`);
    }
  }

  /**
   * Takes the counts accumulated on the device over `samples` inputs, ending at `step` steps done.
   * A full density window closes only when `mayCloseWindow` (regular snapshots), so extra
   * snapshots — before a checkpoint, say — never move window boundaries.
   */
  absorb(counts: Int32Array, step: number, samples: number, mayCloseWindow = true): void {
    const s = this.#s;
    for (let j = 0; j < this.dSae; j++) {
      const c = counts[j]!;
      if (c > 0) s.lastFired[j] = step;
      s.windowCounts[j]! += c;
      s.totalCounts[j]! += c;
    }
    s.windowSamples += samples;
    s.totalSamples += samples;
    if (mayCloseWindow && s.windowSamples >= this.windowSamples) {
      const density = new Float64Array(this.dSae);
      for (let j = 0; j < this.dSae; j++) density[j] = s.windowCounts[j]! / s.windowSamples;
      s.lastDensity = density;
      s.lastDensitySamples = s.windowSamples;
      s.windowCounts.fill(0);
      s.windowSamples = 0;
    }
  }

  /** Features that have not fired since step `since` (exclusive), ascending. */
  deadSince(since: number): Int32Array {
    const out: number[] = [];
    for (let j = 0; j < this.dSae; j++) if (this.#s.lastFired[j]! <= since) out.push(j);
    return Int32Array.from(out);
  }

  /** Marks features as just (re)born at `step`, so they are not counted dead before they can fire. */
  markFresh(features: Int32Array, step: number): void {
    for (const j of features) this.#s.lastFired[j] = step;
  }

  /** Dead and ultra-low-density counts of the last completed window; null before the first. */
  summary(): DensitySummary | null {
    const d = this.#s.lastDensity;
    if (d === null) return null;
    let dead = 0;
    let ultraLow = 0;
    for (let j = 0; j < this.dSae; j++) {
      if (d[j] === 0) dead++;
      else if (d[j]! < 1e-6) ultraLow++;
    }
    return { dead, ultraLow, samples: this.#s.lastDensitySamples };
  }

  /**
   * Per-feature density for export: the last completed window, or, before one has completed,
   * everything seen so far (null when nothing was seen).
   */
  density(): Float64Array | null {
    const s = this.#s;
    if (s.lastDensity) return s.lastDensity;
    if (s.totalSamples === 0) return null;
    return s.totalCounts.map((c) => c / s.totalSamples);
  }

  state(): FiringStatsState {
    const s = this.#s;
    return {
      lastFired: s.lastFired.slice(),
      windowCounts: s.windowCounts.slice(),
      windowSamples: s.windowSamples,
      lastDensity: s.lastDensity?.slice() ?? null,
      lastDensitySamples: s.lastDensitySamples,
      totalCounts: s.totalCounts.slice(),
      totalSamples: s.totalSamples,
    };
  }
}
