/**
 * Finite-state automata of features, as "Towards Monosemanticity" describes them: feature X, active
 * on one token, boosts the logits of tokens on which feature Y then fires at the next position;
 * chains that close into cycles (a self-loop like base64's, two-step loops, the four-feature HTML
 * loop) behave like little automata.
 *
 * An edge X → Y needs both kinds of evidence. Its logit strength Σ_t b_X(t) p_Y(t), where b_X is
 * X's positive logit weights over its top `topTokens` tokens, normalised to sum to 1, and p_Y(t)
 * is the fraction of Y's total activation that falls on token t: the chance that a token X
 * promotes is one Y fires on. Its empirical rate on the token set, P(Y fires at i + 1 | X fires
 * at i), from at least `minCount` transitions. Its score is the geometric mean of the two. Cycles
 * of up to `maxLength` features over the strongest edges (score >= `minScore`) are ranked by
 * their weakest edge.
 */
import type { SparseRows } from '../ops.js';
import { extremes } from './extremes.js';

/** Which features fire on each token of a token set, with their activations (CSR rows). */
export class FiringRecord {
  readonly dSae: number;
  readonly vocabSize: number;
  /** Token ids of the recorded positions, in order; contexts are separated by a −1 entry. */
  tokens: number[] = [];
  /** rowStart[i]..rowStart[i + 1] index `features` / `values` for recorded position i. */
  rowStart: number[] = [0];
  /**
   * The firings, position by position: typed arrays grown by doubling (entries from rowStart.at(-1)
   * on are unused capacity). Plain arrays could not hold them: V8 stops a JS array near 2^27
   * elements with a fatal error that no catch sees, and a few million tokens at an L0 of a few
   * dozen reach that.
   */
  features: Int32Array = new Int32Array(1 << 16);
  values: Float32Array = new Float32Array(1 << 16);
  /** How many entries of `features` / `values` are used (their length is the capacity). */
  get firings(): number {
    return this.rowStart.at(-1)!;
  }
  /** Σ activation of each feature on each token id [dSae, vocabSize]. */
  mass: Float32Array;

  constructor(dSae: number, vocabSize: number) {
    if (dSae * vocabSize > 2 ** 28) throw new RangeError(`automata need a [features × vocabulary] table; ${dSae} × ${vocabSize} is too large (use a smaller dictionary or vocabulary)`);
    this.dSae = dSae;
    this.vocabSize = vocabSize;
    this.mass = new Float32Array(dSae * vocabSize);
  }

  /** Records f [contexts·T, dSae] (sparse rows) of ids [contexts, T], positions 1..T−1 of each context. */
  absorb(f: SparseRows, ids: Int32Array, T: number): void {
    if (f.rows !== ids.length || f.n !== this.dSae || ids.length % T !== 0) throw new RangeError(`f must be [${ids.length}, ${this.dSae}] for whole contexts of ${T} (got [${f.rows}, ${f.n}])`);
    const contexts = ids.length / T;
    let firings = this.firings;
    const needed = firings + f.rowPtr[f.rows]! - f.rowPtr[0]!; // at most this many after the batch
    // The transitions' per-feature offsets are Int32Array sums of the firings.
    if (needed > 2 ** 31 - 1) throw new RangeError(`automata record at most ${2 ** 31 - 1} firings; this token set has more: give fewer contexts (--contexts)`);
    if (needed > this.features.length) {
      const capacity = Math.min(2 ** 31 - 1, Math.max(needed, 2 * this.features.length));
      const features = new Int32Array(capacity);
      features.set(this.features.subarray(0, firings));
      const values = new Float32Array(capacity);
      values.set(this.values.subarray(0, firings));
      [this.features, this.values] = [features, values];
    }
    const { features, values } = this;
    for (let c = 0; c < contexts; c++) {
      for (let t = 1; t < T; t++) {
        const r = c * T + t; // row of f
        const token = ids[r]!;
        for (let k = f.rowPtr[r]!; k < f.rowPtr[r + 1]!; k++) {
          const i = f.cols[k]!;
          const a = f.values[k]!;
          features[firings] = i;
          values[firings++] = a;
          this.mass[i * this.vocabSize + token]! += a;
        }
        this.tokens.push(token);
        this.rowStart.push(firings);
      }
      this.tokens.push(-1); // context boundary: no transition across it
      this.rowStart.push(firings);
    }
  }
}

export interface AutomataEdge {
  from: number;
  to: number;
  /** Logit strength: Σ_t b_from(t) p_to(t). */
  strength: number;
  /** P(to fires at i + 1 | from fires at i) on the token set. */
  empirical: number;
  /** √(strength × empirical). */
  score: number;
}

export interface AutomatonCycle {
  features: number[];
  edges: AutomataEdge[];
  /** The weakest edge's score. */
  strength: number;
  /** A stretch of tokens where the features fire in the cycle's order (null if none was seen). */
  example: { tokens: number[]; activations: number[] } | null;
}

export interface AutomataOptions {
  topTokens?: number;
  /** Edges scoring below this are left out. */
  minScore?: number;
  /** Fewest observed X → Y transitions for an edge. */
  minCount?: number;
  /** Out-edges kept per feature (the strongest). */
  maxOutEdges?: number;
  maxLength?: number;
  maxCycles?: number;
}

/**
 * Cycles of the feature graph. `logits` holds each feature's median-shifted logit weights over the
 * vocabulary [dSae, vocabSize] (e.g. from logit-weights.ts's full vectors).
 */
export async function findAutomata(
  record: FiringRecord,
  logits: Float32Array,
  options: AutomataOptions = {},
): Promise<{ edges: AutomataEdge[]; cycles: AutomatonCycle[]; cyclesFound: number }> {
  const { dSae: n, vocabSize: V } = record;
  if (logits.length !== n * V) throw new RangeError(`logits must be [${n}, ${V}] (got ${logits.length} values)`);
  const topTokens = options.topTokens ?? 20;
  const minScore = options.minScore ?? 0.05;
  const minCount = options.minCount ?? 3;
  const maxOut = options.maxOutEdges ?? 4;
  const maxLength = options.maxLength ?? 4;
  const maxCycles = options.maxCycles ?? 50;
  for (const [name, v] of [['topTokens', topTokens], ['minCount', minCount], ['maxOutEdges', maxOut], ['maxLength', maxLength], ['maxCycles', maxCycles]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${name} must be a non-negative integer (got ${v})`);
  }
  if (!(minScore >= 0)) throw new RangeError(`minScore must be a number >= 0 (got ${minScore})`);

  // b_X: X's positive logit weights on its top `topTokens` tokens, normalised to sum to 1 (sparse:
  // bTokens[X·topTokens + k], bWeights[same]; −1 past X's last token).
  const bTokens = new Int32Array(n * topTokens).fill(-1);
  const bWeights = new Float64Array(n * topTokens);
  for (let x = 0; x < n; x++) {
    const row = logits.subarray(x * V, (x + 1) * V);
    const top = extremes(row, topTokens, (a, b) => a > b, (t) => row[t]! > 0); // its largest positive weights, largest first
    let total = 0;
    for (const t of top) total += logits[x * V + t]!;
    top.forEach((t, k) => {
      bTokens[x * topTokens + k] = t;
      bWeights[x * topTokens + k] = logits[x * V + t]! / total;
    });
  }
  // p_Y(t) = mass[Y, t] / massTotal[Y]: the fraction of Y's activation on token t.
  const massTotal = new Float64Array(n);
  for (let y = 0; y < n; y++) for (let t = 0; t < V; t++) massTotal[y]! += record.mass[y * V + t]!;
  /** The logit strength Σ_t b_X(t) p_Y(t), over X's top tokens. */
  const strength = (x: number, y: number): number => {
    if (massTotal[y] === 0) return 0;
    let s = 0;
    for (let k = 0; k < topTokens; k++) {
      const t = bTokens[x * topTokens + k]!;
      if (t < 0) break;
      s += bWeights[x * topTokens + k]! * record.mass[y * V + t]!;
    }
    return s / massTotal[y]!;
  };

  // Edges: observed transitions, scored with their logit strength; the best few per feature.
  const candidates: AutomataEdge[][] = Array.from({ length: n }, () => []);
  forEachFeatureTransitions(record, (x, fired, followers, count) => {
    for (const y of followers) {
      if (count[y]! < minCount) continue;
      const empirical = count[y]! / fired;
      const s = Math.max(0, strength(x, y));
      const score = Math.sqrt(s * empirical);
      if (score >= minScore) candidates[x]!.push({ from: x, to: y, strength: s, empirical, score });
    }
  });
  const outEdges = candidates.map((list) => list.sort((e1, e2) => e2.score - e1.score).slice(0, maxOut));
  const out = outEdges.map((list) => list.map((e) => e.to));
  const edge = (x: number, y: number): AutomataEdge => outEdges[x]!.find((e) => e.to === y)!;
  const edges = outEdges.flat();

  // Simple cycles up to maxLength, each found once from its smallest feature.
  const cycles: AutomatonCycle[] = [];
  const path: number[] = [];
  const visit = (start: number, node: number) => {
    for (const next of out[node]!) {
      if (next === start) {
        const features = [...path];
        const cycleEdges = features.map((x, i) => edge(x, features[(i + 1) % features.length]!));
        cycles.push({ features, edges: cycleEdges, strength: Math.min(...cycleEdges.map((e) => e.score)), example: null });
      } else if (next > start && path.length < maxLength && !path.includes(next)) {
        path.push(next);
        visit(start, next);
        path.pop();
      }
    }
  };
  for (let s = 0; s < n; s++) {
    path.push(s);
    visit(s, s);
    path.pop();
  }
  cycles.sort((c1, c2) => c2.strength - c1.strength);
  const kept = cycles.slice(0, maxCycles);
  for (const cycle of kept) cycle.example = findExample(record, cycle.features);
  return { edges, cycles: kept, cyclesFound: cycles.length };
}

/**
 * Calls visit(X, fired, followers, count) once for each feature X that fires at a position with a
 * next position in its context: fired is how many such positions X fires at; followers the
 * features Y that fire right after one of them, in order of first occurrence, each with count[Y]
 * transitions X → Y (count is only valid for the followers, and only during the call). Features
 * are visited in increasing order. Memory: one entry per firing, and two arrays of dSae.
 */
function forEachFeatureTransitions(record: FiringRecord, visit: (x: number, fired: number, followers: readonly number[], count: Int32Array) => void): void {
  const n = record.dSae;
  const positions = record.tokens.length;
  const hasNext = (i: number) => i + 1 < positions && record.tokens[i] !== -1 && record.tokens[i + 1] !== -1;
  // The positions each feature fires at (those with a next position), grouped by feature:
  // at[start[X] .. start[X + 1]) in increasing order.
  const start = new Int32Array(n + 1);
  for (let i = 0; i < positions; i++) {
    if (!hasNext(i)) continue;
    for (let p = record.rowStart[i]!; p < record.rowStart[i + 1]!; p++) start[record.features[p]! + 1]! += 1;
  }
  for (let x = 0; x < n; x++) start[x + 1]! += start[x]!;
  const at = new Int32Array(start[n]!);
  const filled = start.slice(0, n);
  for (let i = 0; i < positions; i++) {
    if (!hasNext(i)) continue;
    for (let p = record.rowStart[i]!; p < record.rowStart[i + 1]!; p++) at[filled[record.features[p]!]!++] = i;
  }
  const count = new Int32Array(n);
  const followers: number[] = [];
  for (let x = 0; x < n; x++) {
    if (start[x] === start[x + 1]) continue;
    for (let k = start[x]!; k < start[x + 1]!; k++) {
      const next = at[k]! + 1;
      for (let q = record.rowStart[next]!; q < record.rowStart[next + 1]!; q++) {
        const y = record.features[q]!;
        if (count[y]!++ === 0) followers.push(y);
      }
    }
    visit(x, start[x + 1]! - start[x]!, followers, count);
    for (const y of followers) count[y] = 0;
    followers.length = 0;
  }
}

/** The first stretch where cycle[0], cycle[1], ... fire on consecutive tokens, once round the loop and back to the start. */
function findExample(record: FiringRecord, cycle: number[]): { tokens: number[]; activations: number[] } | null {
  const steps = cycle.length + 1;
  const activation = (i: number, feature: number) => {
    for (let k = record.rowStart[i]!; k < record.rowStart[i + 1]!; k++) if (record.features[k] === feature) return record.values[k]!;
    return 0;
  };
  for (let i = 0; i + steps <= record.tokens.length; i++) {
    const acts: number[] = [];
    for (let s = 0; s < steps; s++) {
      if (record.tokens[i + s] === -1) break;
      const a = activation(i + s, cycle[s % cycle.length]!);
      if (a <= 0) break;
      acts.push(a);
    }
    if (acts.length === steps) return { tokens: record.tokens.slice(i, i + steps), activations: acts.map((a) => Math.round(a * 1e4) / 1e4) };
  }
  return null;
}
