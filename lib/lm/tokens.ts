/**
 * tokens.ts — the loops over every token of a batch that a forward or a training step runs on the
 * host: the vocabulary check, the next-token targets and the loss rows kept. Each is a small
 * function of its own, which V8 optimises within its first calls; inside a large async function
 * (the forward) the same loop can stay in the interpreter, at tens of ns a token: milliseconds a
 * forward at 65,536 tokens.
 */

/** The index of the first id outside [0, vocab), or -1. */
export function firstOutOfVocabulary(ids: Int32Array, vocab: number): number {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (id < 0 || id >= vocab) return i;
  }
  return -1;
}

/** Next-token targets of contexts [rows, T]: targets[r, t] = ids[r, t + 1]; the last position has none (−1). */
export function nextTokenTargets(ids: Int32Array, rows: number, T: number): Int32Array {
  const targets = new Int32Array(rows * T);
  for (let r = 0; r < rows; r++) {
    const row = r * T; // ids[r, :] starts here
    for (let t = 0; t + 1 < T; t++) targets[row + t] = ids[row + t + 1]!;
    targets[row + T - 1] = -1;
  }
  return targets;
}

/**
 * The per-position losses [rows, T] without each context's last position (which has no target),
 * as [rows, T − 1], and their mean (summed in order, in double).
 */
export function lossesWithTargets(all: Float32Array, rows: number, T: number): { perToken: Float32Array; mean: number } {
  const perToken = new Float32Array(rows * (T - 1));
  let sum = 0;
  for (let r = 0; r < rows; r++) {
    for (let t = 0; t < T - 1; t++) {
      const v = all[r * T + t]!; // all[r, t]
      perToken[r * (T - 1) + t] = v;
      sum += v;
    }
  }
  return { perToken, mean: sum / perToken.length };
}
