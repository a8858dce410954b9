/**
 * The standard SAE training step written in TensorFlow.js, as a point of comparison for the
 * native step in bench/sae-step.ts. Same maths as test/reference/sae-reference.ts with penalty
 * 'l1' and a unit-norm decoder (row-major, d = d_in, n = d_sae, B = batch rows):
 *
 *   xc = x − b_dec;  pre = xc·W_enc + b_enc;  f = ReLU(pre);  xhat = f·W_dec + b_dec
 *   loss = (1/B) Σ (x − xhat)² + λ·(1/B) Σ f          (λ = 5)
 *   g = (2/B)(xhat − x);  dW_dec = fᵀ·g;  dpre = (g·W_decᵀ + λ/B)·[pre > 0]
 *   dW_enc = xcᵀ·dpre;  db_enc = Σ_b dpre;  db_dec = Σ_b g − W_enc·db_enc
 *   dW_dec −= rowwise (dW_dec·W_dec)/‖W_dec‖² W_dec;  Adam (PyTorch form) on all four;  W_dec rows → unit norm
 *
 * Gradients are written by hand with transposed products, not with tf.grad: tfjs's automatic
 * gradient of a matmul is far slower, which would make the comparison unfair to tfjs. Each
 * transposed product goes through the fastest form per backend (see matMulT): on 'cpu' the
 * transpose flags of tf.matMul(a, b, transposeA, transposeB); on 'wasm' an explicit tf.transpose
 * then a plain product, because tfjs-backend-wasm 4.22's BatchMatMul with a transpose flag is
 * 10–50x slower than without (measured at B=1024, d=512, n=4096 on 2 cores: fᵀ·g 8.3 s with
 * transposeA vs 0.17 s with tf.transpose first). Five products of 2·B·d·n FLOP each, so
 * 10·B·d·n FLOP per step. Parameters and Adam moments are tf.Variables updated with assign() inside
 * one tf.tidy per step; each timed step ends with `await loss.data()`, so the clock stops only
 * after the backend has finished the step.
 *
 * Backends: '@tensorflow/tfjs' pure-JS 'cpu', and '@tensorflow/tfjs-backend-wasm' (XNNPACK). In
 * Node the wasm backend uses the SIMD binary when WebAssembly SIMD validates, but never threads:
 * tfjs-backend-wasm 4.x turns multithreading off under Node (tensorflow/tfjs#3830).
 *
 * Standalone:
 *   node <compiled>/bench/reference/tfjs-sae-step.js --backend cpu|wasm|both --d 512 --n 4096 --batch 1024 [--warmup N] [--iters N] [--seed N]
 *   (defaults: wasm 2 warm-up + 5 timed steps; cpu 1 + 2, since one pure-JS step takes ~27 s at that shape)
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import * as tf from '@tensorflow/tfjs';

export interface TfjsSaeStepOptions {
  backend: 'cpu' | 'wasm';
  d: number;
  n: number;
  batch: number;
  warmup: number;
  iters: number;
  seed?: number;
  /** Called with the loss of every step (warm-up included), e.g. to check the step against the reference. */
  onLoss?: (loss: number, step: number) => void;
}

export interface TfjsSaeStepResult {
  backend: string;
  msPerStep: number[];
  medianMs: number;
  threads?: number;
  note?: string;
}

const L1_COEFF = 5;
/** Adam hyper-parameters of the step (exported so a check can run the reference with the same ones). */
export const TFJS_STEP_HYPER = { l1Coeff: L1_COEFF, lr: 4e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8 } as const;
const ADAM = TFJS_STEP_HYPER;

let wasmReady: Promise<{ threads: number; simd: boolean; multithread: boolean }> | undefined;

/** Registers and initialises the wasm backend once per process (the .wasm files are read from node_modules). */
function initWasm(): Promise<{ threads: number; simd: boolean; multithread: boolean }> {
  wasmReady ??= (async () => {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    // Node's emscripten loader reads the binary with fs, so it wants a plain directory path
    // (not a file:// URL) ending in a separator: .../node_modules/@tensorflow/tfjs-backend-wasm/dist/
    const require = createRequire(import.meta.url);
    const dist = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm'));
    wasm.setWasmPaths(dist + path.sep);
    if (!(await tf.setBackend('wasm'))) throw new Error('tfjs: could not initialise the wasm backend');
    await tf.ready();
    const simd = Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'));
    const multithread = Boolean(await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT'));
    return { threads: wasm.getThreadsCount(), simd, multithread };
  })();
  return wasmReady;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

type ParamName = 'W_enc' | 'b_enc' | 'W_dec' | 'b_dec';
const PARAM_NAMES: readonly ParamName[] = ['W_enc', 'b_enc', 'W_dec', 'b_dec'];

/**
 * a·b with a and/or b transposed, in the fastest form for the backend: tfjs-backend-wasm's
 * BatchMatMul with transposeA/transposeB is 10–50x slower than transposing first (the transpose
 * itself costs ~40 ms for a 1024 x 4096 operand), while the pure-JS cpu backend is as fast either
 * way, so it keeps the flags.
 */
function matMulT(a: tf.Tensor2D, b: tf.Tensor2D, transposeA: boolean, transposeB: boolean, explicitTranspose: boolean): tf.Tensor2D {
  if (!explicitTranspose) return tf.matMul(a, b, transposeA, transposeB);
  return tf.matMul(transposeA ? tf.transpose(a) : a, transposeB ? tf.transpose(b) : b);
}

/** W[i, :] / ‖W[i, :]‖ for every row of a 2-D tensor (zero rows stay zero). */
function normalizeRows<T extends tf.Tensor>(W: T): T {
  return tf.divNoNan(W, tf.norm(W, 'euclidean', 1, true));
}

/**
 * Times the standard SAE training step in tfjs on `backend` at (d, n, batch): `warmup` untimed
 * steps, then `iters` timed steps (performance.now(), each ending with the loss read back).
 */
export async function timeTfjsSaeStep(opts: TfjsSaeStepOptions): Promise<TfjsSaeStepResult> {
  const { d, n, batch: B, warmup, iters } = opts;
  const seed = opts.seed ?? 1;
  for (const [k, v] of Object.entries({ d, n, batch: B, iters }))
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`${k} must be a positive integer (got ${v})`);
  if (!Number.isInteger(warmup) || warmup < 0) throw new RangeError(`warmup must be a non-negative integer (got ${warmup})`);

  let threads: number | undefined;
  let note: string | undefined;
  if (opts.backend === 'wasm') {
    const info = await initWasm();
    if (!(await tf.setBackend('wasm'))) throw new Error('tfjs: could not switch to the wasm backend');
    threads = info.threads;
    note = `${info.simd ? 'SIMD' : 'no SIMD'}, ${info.multithread ? 'multithreaded' : 'single-threaded'} (XNNPACK threads: ${info.threads})`;
  } else {
    if (!(await tf.setBackend('cpu'))) throw new Error('tfjs: could not switch to the cpu backend');
    threads = 1;
    note = 'pure JavaScript, single-threaded';
  }
  await tf.ready();

  // Seeded, non-zero data and parameters: x ~ N(0, 1); W_dec rows random unit vectors;
  // W_enc = W_decᵀ (the usual initialisation); b_enc = 0; b_dec = small random.
  const x = tf.randomNormal([B, d], 0, 1, 'float32', seed) as tf.Tensor2D; // [B, d]
  const W_dec0 = tf.tidy(() => normalizeRows(tf.randomNormal([n, d], 0, 1, 'float32', seed + 1)));
  const vars: Record<ParamName, tf.Variable> = {
    W_enc: tf.variable(tf.tidy(() => tf.transpose(W_dec0)), true, 'W_enc'), // [d, n]
    b_enc: tf.variable(tf.zeros([n]), true, 'b_enc'), // [n]
    W_dec: tf.variable(W_dec0, true, 'W_dec'), // [n, d]
    b_dec: tf.variable(tf.randomUniform([d], -0.1, 0.1, 'float32', seed + 2), true, 'b_dec'), // [d]
  };
  W_dec0.dispose(); // tf.variable copied it
  const zeroVars = (prefix: string) =>
    Object.fromEntries(PARAM_NAMES.map((k) => [k, tf.variable(tf.zerosLike(vars[k]), true, `${prefix}_${k}`)])) as Record<ParamName, tf.Variable>;
  const m = zeroVars('m'); // Adam first moments
  const v = zeroVars('v'); // Adam second moments
  let t = 0;

  const explicitTranspose = opts.backend === 'wasm'; // see matMulT
  /** One training step; returns the loss before the update (a scalar the caller must dispose). */
  const step = (): tf.Scalar =>
    tf.tidy(() => {
      const W_enc = vars.W_enc as tf.Tensor2D; // [d, n]
      const W_dec = vars.W_dec as tf.Tensor2D; // [n, d]
      const { b_enc, b_dec } = vars;
      // Forward.
      const xc = tf.sub(x, b_dec) as tf.Tensor2D; // [B, d]
      const pre = tf.add(tf.matMul(xc, W_enc), b_enc); // [B, n]
      const f = tf.relu(pre) as tf.Tensor2D; // [B, n]
      const xhat = tf.add(tf.matMul(f, W_dec), b_dec); // [B, d]
      const r = tf.sub(xhat, x); // [B, d]
      const mse = tf.div(tf.sum(tf.square(r)), B);
      const sparsity = tf.div(tf.sum(f), B); // f ≥ 0, so Σ|f| = Σ f
      const loss = tf.add(mse, tf.mul(sparsity, L1_COEFF)) as tf.Scalar;

      // Backward, by hand.
      const g = tf.mul(r, 2 / B) as tf.Tensor2D; // ∂loss/∂xhat, [B, d]
      let dW_dec: tf.Tensor = matMulT(f, g, true, false, explicitTranspose); // fᵀ·g, [n, d]
      const df = tf.add(matMulT(g, W_dec, false, true, explicitTranspose), L1_COEFF / B); // g·W_decᵀ + λ/B, [B, n]
      const dpre = tf.mul(df, tf.step(pre)) as tf.Tensor2D; // ReLU'(pre) = [pre > 0], [B, n]
      const dW_enc = matMulT(xc, dpre, true, false, explicitTranspose); // xcᵀ·dpre, [d, n]
      const db_enc = tf.sum(dpre, 0); // [n]
      // b_dec enters through xhat (+Σ_b g) and through xc = x − b_dec (−W_enc·db_enc).
      const db_dec = tf.sub(tf.sum(g, 0), tf.reshape(tf.matMul(W_enc, tf.reshape(db_enc, [n, 1])), [d])); // [d]

      // Unit-norm decoder: drop the component of each dW_dec row along its W_dec row.
      const along = tf.divNoNan(tf.sum(tf.mul(dW_dec, W_dec), 1, true), tf.sum(tf.square(W_dec), 1, true)); // [n, 1]
      dW_dec = tf.sub(dW_dec, tf.mul(along, W_dec));

      // Adam (PyTorch form, no weight decay): p −= lr·m̂/(sqrt(v̂) + ε).
      t += 1;
      const bc1 = 1 - ADAM.beta1 ** t;
      const bc2 = 1 - ADAM.beta2 ** t;
      const grads: Record<ParamName, tf.Tensor> = { W_enc: dW_enc, b_enc: db_enc, W_dec: dW_dec, b_dec: db_dec };
      for (const k of PARAM_NAMES) {
        const gk = grads[k];
        const mk = tf.add(tf.mul(m[k], ADAM.beta1), tf.mul(gk, 1 - ADAM.beta1));
        const vk = tf.add(tf.mul(v[k], ADAM.beta2), tf.mul(tf.square(gk), 1 - ADAM.beta2));
        m[k].assign(mk);
        v[k].assign(vk);
        const update = tf.div(tf.mul(mk, ADAM.lr / bc1), tf.add(tf.sqrt(tf.div(vk, bc2)), ADAM.eps));
        vars[k].assign(tf.sub(vars[k], update));
      }
      // Renormalise the decoder rows.
      vars.W_dec.assign(normalizeRows(vars.W_dec));
      return loss;
    });

  const msPerStep: number[] = [];
  try {
    for (let i = 0; i < warmup + iters; i++) {
      const t0 = performance.now();
      const loss = step();
      const value = (await loss.data())[0]!;
      const ms = performance.now() - t0;
      loss.dispose();
      if (!Number.isFinite(value)) throw new Error(`tfjs ${opts.backend}: loss is ${value} at step ${i + 1}`);
      opts.onLoss?.(value, i + 1);
      if (i >= warmup) msPerStep.push(ms);
    }
  } finally {
    x.dispose();
    for (const k of PARAM_NAMES) {
      vars[k].dispose();
      m[k].dispose();
      v[k].dispose();
    }
  }
  return { backend: tf.getBackend(), msPerStep, medianMs: median(msPerStep), threads, note };
}

// ---------------------------------------------------------------------------------------------
// Standalone CLI

async function cli(argv: string[]): Promise<void> {
  const args = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const [key, inline] = a.slice(2).split('=', 2) as [string, string | undefined];
    args.set(key, inline ?? argv[++i] ?? '');
  }
  const num = (k: string, dflt: number) => (args.has(k) ? Number(args.get(k)) : dflt);
  const backendArg = args.get('backend') ?? 'wasm';
  const backends = backendArg === 'both' ? (['wasm', 'cpu'] as const) : [backendArg];
  const d = num('d', 512);
  const n = num('n', 4096);
  const batch = num('batch', 1024);
  const flop = 10 * batch * d * n;
  console.log(`tfjs SAE step (d, n, B) = (${d}, ${n}, ${batch}); ${(flop / 1e9).toFixed(2)} GFLOP per step`);
  for (const backend of backends) {
    if (backend !== 'cpu' && backend !== 'wasm') throw new Error(`--backend must be cpu, wasm or both (got ${backend})`);
    const warmup = num('warmup', backend === 'cpu' ? 1 : 2);
    const iters = num('iters', backend === 'cpu' ? 2 : 5);
    const r = await timeTfjsSaeStep({ backend, d, n, batch, warmup, iters, seed: num('seed', 1) });
    const gflops = flop / (r.medianMs * 1e6);
    console.log(
      `${r.backend}: median ${r.medianMs.toFixed(1)} ms/step, ${gflops.toFixed(2)} GFLOP/s ` +
        `(${warmup} warm-up + ${iters} timed: ${r.msPerStep.map((ms) => ms.toFixed(0)).join(', ')} ms)` +
        (r.note ? `; ${r.note}` : ''),
    );
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await cli(process.argv.slice(2));
}
