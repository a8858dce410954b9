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
 * closes, its densities become `lastDensity` (what metrics report) and a new window starts.
 *
 * The export's densities (the SAELens sparsity file) describe the SAE as training left it: the
 * counts of the latest `windowSamples` inputs, or of the latter half of a run that saw fewer than
 * twice that. Recent counts are kept in buckets of at least windowSamples / 32 inputs (whole
 * snapshots each), the oldest dropped once the rest cover the window, so the export's span is
 * exact to a bucket and its memory is about 33 counts per feature.
 */

/** Firing counts of consecutive snapshots, summed: `samples` inputs in all. */
export interface CountBucket {
  counts: Float64Array;
  samples: number;
}

export interface FiringStatsState {
  lastFired: Int32Array;
  windowCounts: Float64Array;
  windowSamples: number;
  lastDensity: Float64Array | null;
  lastDensitySamples: number;
  totalSamples: number;
  /** The latest inputs' counts, oldest bucket first, the last one open (covering at least windowSamples inputs once that many were seen). */
  recent: CountBucket[];
}

/** Buckets per density window: the export's span is exact to windowSamples / BUCKETS_PER_WINDOW inputs. */
const BUCKETS_PER_WINDOW = 32;

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
      totalSamples: 0,
      recent: [],
    };
    if (
      this.#s.lastFired.length !== dSae ||
      this.#s.windowCounts.length !== dSae ||
      this.#s.recent.some((bucket) => bucket.counts.length !== dSae)
    ) {
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
    }
    s.windowSamples += samples;
    s.totalSamples += samples;
    this.#addRecent(counts, samples, mayCloseWindow);
    if (mayCloseWindow && s.windowSamples >= this.windowSamples) {
      const density = new Float64Array(this.dSae);
      for (let j = 0; j < this.dSae; j++) density[j] = s.windowCounts[j]! / s.windowSamples;
      s.lastDensity = density;
      s.lastDensitySamples = s.windowSamples;
      s.windowCounts.fill(0);
      s.windowSamples = 0;
    }
  }

  /**
   * Adds a snapshot's counts to the open (newest) bucket; a regular snapshot closes it once it
   * holds a 32nd of a window, so, as for windows, extra snapshots never move bucket boundaries.
   * Then drops the oldest buckets the window no longer needs.
   */
  #addRecent(counts: Int32Array, samples: number, mayClose: boolean): void {
    const recent = this.#s.recent;
    if (recent.length === 0) recent.push({ counts: new Float64Array(this.dSae), samples: 0 });
    const open = recent.at(-1)!;
    for (let j = 0; j < this.dSae; j++) open.counts[j]! += counts[j]!;
    open.samples += samples;
    if (mayClose && open.samples >= this.windowSamples / BUCKETS_PER_WINDOW) recent.push({ counts: new Float64Array(this.dSae), samples: 0 });
    let covered = recent.reduce((sum, bucket) => sum + bucket.samples, 0);
    while (recent.length > 1 && covered - recent[0]!.samples >= this.windowSamples) covered -= recent.shift()!.samples;
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
   * Per-feature density for export, and the inputs it covers: the latest windowSamples inputs, or
   * the latter half of a run shorter than two windows (to a bucket: the fewest latest buckets that
   * cover the span); null when nothing was seen.
   */
  density(): { density: Float64Array; samples: number } | null {
    const s = this.#s;
    if (s.totalSamples === 0 || s.recent.every((bucket) => bucket.samples === 0)) return null;
    const span = Math.min(this.windowSamples, s.totalSamples / 2);
    const counts = new Float64Array(this.dSae);
    let samples = 0;
    for (let b = s.recent.length - 1; b >= 0 && samples < span; b--) {
      const bucket = s.recent[b]!;
      for (let j = 0; j < this.dSae; j++) counts[j]! += bucket.counts[j]!;
      samples += bucket.samples;
    }
    return { density: counts.map((c) => c / samples), samples };
  }

  state(): FiringStatsState {
    const s = this.#s;
    return {
      lastFired: s.lastFired.slice(),
      windowCounts: s.windowCounts.slice(),
      windowSamples: s.windowSamples,
      lastDensity: s.lastDensity?.slice() ?? null,
      lastDensitySamples: s.lastDensitySamples,
      totalSamples: s.totalSamples,
      recent: s.recent.map((bucket) => ({ counts: bucket.counts.slice(), samples: bucket.samples })),
    };
  }
}
