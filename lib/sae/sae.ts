/**
 * The standard sparse autoencoder of "Towards Monosemanticity", trained through the native
 * backends:
 *
 *   x̄ = x − b_dec,  f = ReLU(x̄ W_enc + b_enc),  x̂ = f W_dec + b_dec
 *   loss = mean_b ‖x − x̂‖² + λ · mean_b Σ_i f_i c_i,   c_i = 1 ('l1') or ‖W_dec,i‖ ('l1_decnorm')
 *
 * Parameters (fp32, SAELens layout): W_enc [d, n], b_enc [n], W_dec [n, d], b_dec [d].
 * A step is: gradients → (unit-norm decoder: remove the gradient parallel to each decoder row) →
 * Adam on all four → (renormalise decoder rows). Per-feature firing counts accumulate on the device.
 *
 * Operations on one SAE run in the order they were called. step/grads/encode/decode are async
 * (they run on a worker thread) and use the hyperparameters as they were at the call; their input
 * tensors are read when they run, so keep them as they are until the promise settles. The
 * parameter, moment and count reads and writes are synchronous copies, refused while an operation
 * is still pending (they would land before it).
 */
import { type BackendName, nativeAddon, resolveBackend } from '../backend.js';
import { sharesMemory } from '../lm/op-checks.js';
import { Tensor, formatShape } from '../tensor.js';
import {
  type Hyperparameters,
  type Penalty,
  type Precision,
  type ResolvedOptions,
  type SaeOptions,
  checkHyperparameters,
  positiveInteger,
  resolveOptions,
} from './config.js';
import { geometricMedian } from './geometric-median.js';
import { type SaeParameterArrays, initialParameters } from './init.js';

export interface StepStats {
  /** mse + λ · sparsity, before the update. */
  loss: number;
  /** mean over the batch of ‖x − x̂‖². */
  mse: number;
  /** mean over the batch of Σ_i f_i c_i. */
  sparsity: number;
  /** mean number of active features per row. */
  l0: number;
}

export interface TrainStepStats extends StepStats {
  /** Global L2 norm of the gradients before clipping (NaN unless clipping is on). */
  gradNorm: number;
}

export interface StepOptions {
  /** Scale the gradients down so their global L2 norm is at most this (0 or absent: no clipping). */
  clipGradNorm?: number;
}

/** Adam's state: the step count and both moments of every parameter. */
export interface OptimizerState {
  steps: number;
  m: SaeParameterArrays;
  v: SaeParameterArrays;
}

export interface ResampleResult {
  /** Features whose slot held a sampled input and were re-initialised. */
  resampled: number;
  /** Features not listed as dead. */
  live: number;
  /** Mean L2 norm of the live features' encoder columns, of all columns when none is live (the scale of the new encoder columns). */
  meanLiveEncoderNorm: number;
}

type ParamName = 'W_enc' | 'b_enc' | 'W_dec' | 'b_dec';
const PARAM_NAMES: readonly ParamName[] = ['W_enc', 'b_enc', 'W_dec', 'b_dec'];

export type SaeTensors = Readonly<Record<ParamName, Tensor>>;

const PRECISION_CODE: Record<Precision, number> = { f32: 0, bf16: 1 };
const PENALTY_CODE: Record<Penalty, number> = { l1: 0, l1_decnorm: 1 };

export class SparseAutoencoder {
  readonly dIn: number;
  readonly dSae: number;
  readonly backend: BackendName;
  readonly penalty: Penalty;
  readonly precision: Precision;
  readonly constrainDecoder: boolean;
  #hyper: Hyperparameters;
  #params: SaeTensors;
  #grads: SaeTensors;
  #moments: { m: SaeTensors; v: SaeTensors };
  #fireCounts: Tensor;
  #workspace: Tensor | null = null;
  #workspaceBatch = 0;
  #steps = 0;
  #queue: Promise<unknown> = Promise.resolve();
  /** Operations queued or running: the synchronous reads and writes of state wait for none, so they are refused meanwhile. */
  #pending = 0;
  #disposed = false;

  private constructor(o: ResolvedOptions, backend: BackendName) {
    this.dIn = o.dIn;
    this.dSae = o.dSae;
    this.backend = backend;
    this.penalty = o.penalty;
    this.precision = o.precision;
    this.constrainDecoder = o.constrainDecoder;
    this.#hyper = { l1Coeff: o.l1Coeff, lr: o.lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps };
    const made: Tensor[] = [];
    const make = (shape: number[], dtype: 'f32' | 'i32' = 'f32') => {
      const t = Tensor.zeros(shape, { dtype, backend });
      made.push(t);
      return t;
    };
    try {
      const set = () => ({ W_enc: make([o.dIn, o.dSae]), b_enc: make([o.dSae]), W_dec: make([o.dSae, o.dIn]), b_dec: make([o.dIn]) });
      this.#params = set();
      this.#grads = set();
      this.#moments = { m: set(), v: set() };
      this.#fireCounts = make([o.dSae], 'i32');
    } catch (error) {
      for (const t of made) t.dispose();
      throw error;
    }
  }

  /** A freshly initialised SAE (see init.ts); b_dec starts at 0. */
  static create(options: SaeOptions): SparseAutoencoder {
    const backend = resolveBackend(options?.backend);
    const o = resolveOptions(options, backend);
    const sae = new SparseAutoencoder(o, backend);
    sae.writeParameters(initialParameters(o));
    return sae;
  }

  /** Adam steps taken so far. */
  get steps(): number {
    this.#live();
    return this.#steps;
  }

  get hyperparameters(): Hyperparameters {
    this.#live();
    return { ...this.#hyper };
  }

  /** Changes λ, the learning rate or Adam's constants (schedules call this between steps). */
  setHyperparameters(update: Partial<Hyperparameters>): void {
    this.#live();
    if (typeof update !== 'object' || update === null) throw new TypeError('update must be an object of hyperparameters');
    this.#hyper = checkHyperparameters({ ...this.#hyper, ...update });
  }

  /** The parameter tensors (device-resident; read them with toArray() or readParameters()). */
  get parameters(): SaeTensors {
    this.#live();
    return this.#params;
  }

  /** The gradients left by the last step() or computeGradients(). */
  get gradients(): SaeTensors {
    this.#live();
    return this.#grads;
  }

  /** One training step on the batch x [B, dIn] (f32, on this SAE's backend), and its statistics. */
  step(x: Tensor, options: StepOptions = {}): Promise<TrainStepStats> {
    return this.#step(x, options, true) as Promise<TrainStepStats>;
  }

  /**
   * The same training step without reading its statistics back: on CUDA nothing waits for the
   * device (unless the gradients are clipped, which needs their norm on the host), so the caller
   * can prepare the next batch while this one trains. Resolves once the step is queued.
   */
  async queueStep(x: Tensor, options: StepOptions = {}): Promise<void> {
    await this.#step(x, options, false);
  }

  #step(x: Tensor, options: StepOptions, readStats: boolean): Promise<TrainStepStats | undefined> {
    if (typeof options !== 'object' || options === null) throw new TypeError(`options must be an object (got ${options === null ? 'null' : typeof options})`);
    const batch = this.#checkBatch(x, 'x', this.dIn);
    this.#notOwn(x, 'x');
    const clipGradNorm = options.clipGradNorm ?? 0;
    if (typeof clipGradNorm !== 'number' || !(clipGradNorm >= 0) || clipGradNorm === Infinity) {
      throw new RangeError(`clipGradNorm must be a finite number >= 0 (got ${clipGradNorm})`);
    }
    const h = this.#hyper; // as at the call: a later setHyperparameters applies to later steps
    return this.#enqueue(([held]) => {
      const t = this.#steps + 1;
      const args = {
        ...this.#gradsArgs(held!, batch, h.l1Coeff),
        constrainDecoder: this.constrainDecoder,
        clipGradNorm,
        lr: h.lr,
        beta1: h.beta1,
        beta2: h.beta2,
        eps: h.eps,
        t,
        m_W_enc: this.#moments.m.W_enc.native,
        v_W_enc: this.#moments.v.W_enc.native,
        m_b_enc: this.#moments.m.b_enc.native,
        v_b_enc: this.#moments.v.b_enc.native,
        m_W_dec: this.#moments.m.W_dec.native,
        v_W_dec: this.#moments.v.W_dec.native,
        m_b_dec: this.#moments.m.b_dec.native,
        v_b_dec: this.#moments.v.b_dec.native,
        readStats,
      };
      return nativeAddon()
        .saeStep(args)
        .then((stats) => {
          this.#steps = t;
          return stats;
        });
    }, [x]);
  }

  /** Loss and gradients on x without updating anything but the firing counts; see `gradients`. */
  computeGradients(x: Tensor): Promise<StepStats> {
    const batch = this.#checkBatch(x, 'x', this.dIn);
    this.#notOwn(x, 'x');
    const l1Coeff = this.#hyper.l1Coeff;
    return this.#enqueue(([held]) => nativeAddon().saeGrads(this.#gradsArgs(held!, batch, l1Coeff)), [x]);
  }

  /** Feature activations f [B, dSae] for x [B, dIn], into `out` when given. */
  encode(x: Tensor, out?: Tensor): Promise<Tensor> {
    const batch = this.#checkBatch(x, 'x', this.dIn);
    const p = this.#params;
    return this.#intoOutput([batch, this.dSae], out, [x], (o, [held]) =>
      nativeAddon().saeEncode({ ...this.#dims(batch), x: held!.native, W_enc: p.W_enc.native, b_enc: p.b_enc.native, b_dec: p.b_dec.native, out: o.native }),
    );
  }

  /** Reconstruction x̂ [B, dIn] from feature activations f [B, dSae], into `out` when given. */
  decode(f: Tensor, out?: Tensor): Promise<Tensor> {
    const batch = this.#checkBatch(f, 'f', this.dSae);
    const p = this.#params;
    return this.#intoOutput([batch, this.dIn], out, [f], (o, [held]) =>
      nativeAddon().saeDecode({ ...this.#dims(batch), f: held!.native, W_dec: p.W_dec.native, b_dec: p.b_dec.native, out: o.native }),
    );
  }

  /** Copies of the parameters as Float32Arrays. */
  readParameters(): SaeParameterArrays {
    this.#idle('readParameters');
    const p = this.#params;
    return {
      W_enc: p.W_enc.toArray() as Float32Array,
      b_enc: p.b_enc.toArray() as Float32Array,
      W_dec: p.W_dec.toArray() as Float32Array,
      b_dec: p.b_dec.toArray() as Float32Array,
    };
  }

  /** Overwrites any of the parameters (Adam's moments are left as they are). */
  writeParameters(values: Partial<SaeParameterArrays>): void {
    this.#idle('writeParameters');
    if (typeof values !== 'object' || values === null) throw new TypeError('values must be an object of parameter arrays (W_enc, b_enc, W_dec, b_dec)');
    const unknown = Object.keys(values).filter((key) => !(PARAM_NAMES as readonly string[]).includes(key));
    if (unknown.length > 0) throw new RangeError(`unknown parameter ${unknown.map((k) => `'${k}'`).join(', ')} (known: ${PARAM_NAMES.join(', ')})`);
    // Every array is checked before any is written: a refused call changes nothing.
    for (const name of PARAM_NAMES) {
      const data = values[name];
      if (data === undefined) continue;
      const target = this.#params[name];
      if (!(data instanceof Float32Array)) throw new TypeError(`${name} must be a Float32Array`);
      if (data.length !== target.size) {
        throw new RangeError(`${name} holds ${data.length} values; shape ${formatShape(target.shape)} needs ${target.size}`);
      }
    }
    for (const name of PARAM_NAMES) {
      const data = values[name];
      if (data !== undefined) this.#params[name].upload(data);
    }
  }

  /**
   * Sets b_dec to the geometric median (Weiszfeld) of sample rows [rows, dIn] — a Tensor or a
   * Float32Array — as the paper initialises it.
   */
  initDecoderBiasToGeometricMedian(sample: Tensor | Float32Array, rows?: number): void {
    this.#idle('initDecoderBiasToGeometricMedian');
    let data: Float32Array;
    if (sample instanceof Tensor) {
      this.#checkShape2(sample, 'sample', this.dIn);
      data = sample.toFloat32();
    } else if (sample instanceof Float32Array) {
      data = sample;
    } else {
      throw new TypeError('sample must be a Tensor or a Float32Array');
    }
    const count = rows ?? data.length / this.dIn;
    positiveInteger('rows', count);
    const bad = data.findIndex((value) => !Number.isFinite(value));
    if (bad >= 0) throw new RangeError(`sample[${bad}] is ${data[bad]}: the geometric median needs finite rows`);
    const median = geometricMedian(data, count, this.dIn);
    this.#params.b_dec.upload(Float32Array.from(median));
  }

  /** Copies of Adam's moments and step count (for checkpoints). */
  readOptimizerState(): OptimizerState {
    this.#idle('readOptimizerState');
    const read = (set: SaeTensors): SaeParameterArrays => ({
      W_enc: set.W_enc.toArray() as Float32Array,
      b_enc: set.b_enc.toArray() as Float32Array,
      W_dec: set.W_dec.toArray() as Float32Array,
      b_dec: set.b_dec.toArray() as Float32Array,
    });
    return { steps: this.#steps, m: read(this.#moments.m), v: read(this.#moments.v) };
  }

  /** Restores Adam's moments and step count (from readOptimizerState()). */
  writeOptimizerState(state: OptimizerState): void {
    this.#idle('writeOptimizerState');
    if (typeof state !== 'object' || state === null) throw new TypeError('state must be { steps, m, v } as readOptimizerState() returns');
    // The next step is number steps + 1, an int32 in the kernels.
    if (!Number.isSafeInteger(state.steps) || state.steps < 0 || state.steps >= 2 ** 31 - 1) throw new RangeError(`steps must be an integer in [0, 2^31 - 1) (got ${state.steps})`);
    for (const [which, set] of [['m', this.#moments.m], ['v', this.#moments.v]] as const) {
      if (typeof state[which] !== 'object' || state[which] === null) throw new TypeError(`state.${which} must be an object of moment arrays (W_enc, b_enc, W_dec, b_dec)`);
      for (const name of PARAM_NAMES) {
        const data = state[which][name];
        const target = set[name];
        if (!(data instanceof Float32Array)) throw new TypeError(`${which}.${name} must be a Float32Array`);
        if (data.length !== target.size) {
          throw new RangeError(`${which}.${name} holds ${data.length} values; shape ${formatShape(target.shape)} needs ${target.size}`);
        }
        // Adam's second moment is a running mean of squares: finite and >= 0 (a negative one gives NaN steps).
        const bad = data.findIndex((value) => !Number.isFinite(value) || (which === 'v' && value < 0));
        if (bad >= 0) throw new RangeError(`${which}.${name}[${bad}] is ${data[bad]}: Adam's ${which === 'v' ? 'second moment must be finite and >= 0' : 'first moment must be finite'}`);
      }
    }
    for (const [which, set] of [['m', this.#moments.m], ['v', this.#moments.v]] as const) {
      for (const name of PARAM_NAMES) set[name].upload(state[which][name]);
    }
    this.#steps = state.steps;
  }

  /**
   * Re-initialises dead features as the paper describes: for slot i, feature dead[i] gets the
   * decoder row r/‖r‖ and the encoder column 0.2·(mean live encoder norm)·r/‖r‖ (factor
   * `encNormFactor`), bias 0 and fresh Adam moments, where r = candidates.rows[i]. Slots whose key
   * is -inf (no input was sampled) are left alone. See lib/sae/resample.ts for the sampling.
   */
  resampleFeatures(dead: Int32Array, candidates: { keys: Tensor; rows: Tensor }, encNormFactor = 0.2): Promise<ResampleResult> {
    this.#live();
    if (!(dead instanceof Int32Array)) throw new TypeError('dead must be an Int32Array of feature indices');
    if (typeof candidates !== 'object' || candidates === null) throw new TypeError('candidates must be an object { keys, rows }');
    const seen = new Uint8Array(this.dSae);
    for (const j of dead) {
      if (j < 0 || j >= this.dSae) throw new RangeError(`dead holds ${j}, outside [0, ${this.dSae})`);
      if (seen[j]) throw new RangeError(`dead lists feature ${j} twice`);
      seen[j] = 1;
    }
    if (!Number.isFinite(encNormFactor) || encNormFactor < 0) throw new RangeError(`encNormFactor must be finite and >= 0 (got ${encNormFactor})`);
    const count = dead.length;
    if (candidates.keys.size < count || candidates.rows.size < count * this.dIn) {
      throw new RangeError(`candidates hold ${candidates.keys.size} slots; ${count} dead features need as many (rows [${count}, ${this.dIn}])`);
    }
    for (const [name, t] of [['candidates.keys', candidates.keys], ['candidates.rows', candidates.rows]] as const) {
      if (t.backend !== this.backend || t.dtype !== 'f32') throw new TypeError(`${name} must be an f32 tensor on ${this.backend}`);
    }
    if (count === 0) return Promise.resolve({ resampled: 0, live: this.dSae, meanLiveEncoderNorm: Number.NaN });
    for (const [name, t] of [['candidates.keys', candidates.keys], ['candidates.rows', candidates.rows]] as const) {
      if (t.disposed) throw new TypeError(`${name} has been disposed`);
    }
    const deadTensor = Tensor.from(dead, [count], { dtype: 'i32', backend: this.backend });
    const p = this.#params;
    const m = this.#moments.m;
    const v = this.#moments.v;
    return this.#enqueue(([keys, rows]) =>
      nativeAddon().saeResample({
        d: this.dIn,
        n: this.dSae,
        count,
        dead: deadTensor.native,
        candKeys: keys!.native,
        candRows: rows!.native,
        encNormFactor,
        W_enc: p.W_enc.native,
        b_enc: p.b_enc.native,
        W_dec: p.W_dec.native,
        m_W_enc: m.W_enc.native,
        v_W_enc: v.W_enc.native,
        m_b_enc: m.b_enc.native,
        v_b_enc: v.b_enc.native,
        m_W_dec: m.W_dec.native,
        v_W_dec: v.W_dec.native,
      }),
      [candidates.keys, candidates.rows],
    ).finally(() => deadTensor.dispose());
  }

  /** Per-feature count of rows with f > 0 since creation or the last resetFireCounts(). */
  fireCounts(): Int32Array {
    this.#idle('fireCounts');
    return this.#fireCounts.toArray() as Int32Array;
  }

  resetFireCounts(): void {
    this.#idle('resetFireCounts');
    this.#fireCounts.fill(0);
  }

  /**
   * Frees all device memory now (idempotent). An operation already running finishes; one still
   * queued fails with "has been disposed".
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    const sets = [this.#params, this.#grads, this.#moments.m, this.#moments.v];
    for (const set of sets) for (const name of PARAM_NAMES) set[name].dispose();
    this.#fireCounts.dispose();
    this.#workspace?.dispose();
    this.#workspace = null;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  #live(): void {
    if (this.#disposed) throw new TypeError('this SparseAutoencoder has been disposed');
  }

  /** For the synchronous reads and writes of state: refused while an operation is queued or running. */
  #idle(what: string): void {
    this.#live();
    if (this.#pending > 0) throw new TypeError(`SparseAutoencoder.${what} was called while an operation on it is still pending: await it first`);
  }

  /**
   * Runs `op` after the operations queued before it. It is given views of `inputs` taken now, so
   * that an input disposed by the caller before the operation runs stays alive until it ends.
   */
  #enqueue<T>(op: (held: Tensor[]) => Promise<T>, inputs: Tensor[] = []): Promise<T> {
    const held: Tensor[] = [];
    try {
      for (const t of inputs) held.push(t.view(0, t.shape));
    } catch (error) {
      for (const t of held) t.dispose();
      throw error;
    }
    this.#pending += 1;
    const run = this.#queue
      .then(() => {
        this.#live();
        return op(held);
      })
      .finally(() => {
        this.#pending -= 1;
        for (const t of held) t.dispose();
      });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #dims(batch: number) {
    return { batch, d: this.dIn, n: this.dSae, precision: PRECISION_CODE[this.precision] };
  }

  #gradsArgs(x: Tensor, batch: number, l1Coeff: number) {
    const p = this.#params;
    const g = this.#grads;
    return {
      ...this.#dims(batch),
      penalty: PENALTY_CODE[this.penalty],
      l1Coeff,
      x: x.native,
      W_enc: p.W_enc.native,
      b_enc: p.b_enc.native,
      W_dec: p.W_dec.native,
      b_dec: p.b_dec.native,
      dW_enc: g.W_enc.native,
      db_enc: g.b_enc.native,
      dW_dec: g.W_dec.native,
      db_dec: g.b_dec.native,
      fireCounts: this.#fireCounts.native,
      workspace: this.#workspaceFor(batch).native,
    };
  }

  /** The scratch memory for a batch of this size (grown, never shrunk). */
  #workspaceFor(batch: number): Tensor {
    if (this.#workspace === null || batch > this.#workspaceBatch) {
      const bytes = nativeAddon().saeWorkspaceBytes(this.backend, batch, this.dIn, this.dSae, PRECISION_CODE[this.precision]);
      this.#workspace?.dispose();
      this.#workspace = null;
      this.#workspace = Tensor.empty([Math.ceil(bytes / 4)], { backend: this.backend });
      this.#workspaceBatch = batch;
    }
    return this.#workspace;
  }

  #checkShape2(t: Tensor, name: string, width: number): number {
    if (!(t instanceof Tensor)) throw new TypeError(`${name} must be a Tensor`);
    if (t.disposed) throw new TypeError(`${name} has been disposed`);
    if (t.dtype !== 'f32') throw new TypeError(`${name} must have dtype f32 (got ${t.dtype}; use ${name}.cast('f32'))`);
    if (t.backend !== this.backend) {
      throw new TypeError(`${name} is on the ${t.backend} backend but this SAE is on ${this.backend} (use ${name}.to('${this.backend}'))`);
    }
    if (t.shape.length !== 2 || t.shape[1] !== width || t.shape[0]! < 1) {
      throw new RangeError(`${name} must have shape [batch >= 1, ${width}] (got ${formatShape(t.shape)})`);
    }
    return t.shape[0]!;
  }

  /** Runs `op` (queued) into `out`, or into a new tensor of `shape` that is freed if `op` fails. */
  #intoOutput(shape: [number, number], out: Tensor | undefined, inputs: Tensor[], op: (out: Tensor, held: Tensor[]) => Promise<void>): Promise<Tensor> {
    if (out !== undefined) {
      this.#checkShape2(out, 'out', shape[1]);
      if ([...this.#ownTensors(), ...inputs].some((t) => sharesMemory(t, out))) throw new RangeError("out must not be (or overlap) the input or one of this SAE's own tensors");
      if (out.shape[0] !== shape[0]) throw new RangeError(`out must have shape ${formatShape(shape)} (got ${formatShape(out.shape)})`);
    }
    return this.#enqueue(async (held) => {
      const target = out ?? Tensor.empty(shape, { backend: this.backend });
      try {
        await op(target, held);
        return target;
      } catch (error) {
        if (out === undefined) target.dispose();
        throw error;
      }
    }, inputs);
  }

  /** The parameters, gradients, Adam's moments and the step's workspace. */
  #ownTensors(): Tensor[] {
    const own = [...Object.values(this.#params), ...Object.values(this.#grads), ...Object.values(this.#moments.m), ...Object.values(this.#moments.v)];
    return this.#workspace ? [...own, this.#workspace] : own;
  }

  /** A step's input must not share memory with what the step writes. */
  #notOwn(t: Tensor, name: string): void {
    if (this.#ownTensors().some((own) => sharesMemory(own, t))) throw new RangeError(`${name} must not be (or overlap) one of this SAE's own tensors (its parameters, gradients or optimizer state)`);
  }

  #checkBatch(t: Tensor, name: string, width: number): number {
    this.#live();
    return this.#checkShape2(t, name, width);
  }
}
