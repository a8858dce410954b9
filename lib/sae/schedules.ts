/**
 * Learning-rate and sparsity-coefficient schedules, as pure functions of the step.
 *
 * `step` is the 0-based index of the step about to be taken (the first step is 0) and `total`
 * the number of steps in the run. The learning rate is lr × warm-up × decay × re-warm-up:
 *   warm-up     min(1, (step + 1) / warmupSteps)            (1 when warmupSteps = 0)
 *   decay       1 before the decay starts; then, with p = (step − start) / (total − start) in [0, 1):
 *                 'linear': min + (1 − min)(1 − p),  'cosine': min + (1 − min)(1 + cos πp)/2
 *               start = round(total × (1 − decayFraction)); decayFraction 0.2 with 'linear' and
 *               minFraction 0 is Anthropic's "decay to 0 over the last 20%"
 *   re-warm-up  after a dead-feature resample at step R: min(1, (step − R + 1) / rewarmupSteps)
 * λ ramps linearly over l1WarmupSteps: λ × min(1, (step + 1) / l1WarmupSteps).
 */

export type LrDecay = 'constant' | 'linear' | 'cosine';

export interface LrSchedule {
  lr: number;
  warmupSteps: number;
  decay: LrDecay;
  /** Fraction of the run, at its end, over which the rate decays. */
  decayFraction: number;
  /** The rate at the end of the decay, as a fraction of lr. */
  minFraction: number;
  /** Steps of linear re-warm-up after each resample (0: none). */
  rewarmupSteps: number;
}

export interface L1Schedule {
  l1Coeff: number;
  warmupSteps: number;
}

function ramp(progressSteps: number, length: number): number {
  if (length <= 0) return 1;
  return Math.min(1, Math.max(0, progressSteps) / length);
}

/** The step at which decay begins. */
export function decayStart(schedule: LrSchedule, total: number): number {
  if (schedule.decay === 'constant') return total;
  return Math.round(total * (1 - schedule.decayFraction));
}

/**
 * The learning rate for 0-based `step` of `total`; `lastResampleStep` is the step index at which
 * the most recent resample happened (it runs after step R − 1, so step R is the first after it),
 * or null.
 */
export function learningRateAt(schedule: LrSchedule, step: number, total: number, lastResampleStep: number | null = null): number {
  let factor = ramp(step + 1, schedule.warmupSteps);
  const start = decayStart(schedule, total);
  if (schedule.decay !== 'constant' && schedule.decay !== 'linear' && schedule.decay !== 'cosine') {
    throw new RangeError(`decay must be 'constant', 'linear' or 'cosine' (got ${JSON.stringify(schedule.decay)})`);
  }
  if (step >= start && total > start) {
    const p = Math.min(1, (step - start) / (total - start)); // a step past the end stays at the final rate
    const min = schedule.minFraction;
    factor *= schedule.decay === 'linear' ? min + (1 - min) * (1 - p) : min + ((1 - min) * (1 + Math.cos(Math.PI * p))) / 2;
  }
  if (lastResampleStep !== null && schedule.rewarmupSteps > 0 && step >= lastResampleStep) {
    factor *= ramp(step - lastResampleStep + 1, schedule.rewarmupSteps);
  }
  return schedule.lr * factor;
}

/** λ for 0-based `step`. */
export function l1CoeffAt(schedule: L1Schedule, step: number): number {
  return schedule.l1Coeff * ramp(step + 1, schedule.warmupSteps);
}
