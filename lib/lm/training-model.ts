/**
 * A GPT-2-family model in training: parameters, gradients, AdamW moments and the activations a
 * backward pass needs, all device-resident, for a fixed batch shape [B, T] (llm.c's layout).
 *
 * step(ids, targets) runs the forward pass saving activations, the fused softmax–cross-entropy
 * (its gradient overwrites the logits; at bf16 precision the logits are bf16, as under autocast,
 * and so their gradient: the operand the unembedding's backward products read), the backward pass through every layer (parameter
 * gradients accumulate into zeroed buffers), global gradient-norm clipping and AdamW. With
 * crossEntropy 'fused' the forward pass stops at the final layer norm, and the unembedding product
 * is fused into the loss and into the loss's gradient (unembedCrossEntropy and its backward): the
 * fp32 logits are never formed, only their bf16 gradient, in the logits' buffer. A ReLU MLP at bf16
 * takes its backward through c_proj and the ReLU in one op (reluLinearBackward): the gradient of the
 * pre-activations is formed in bf16, the operand c_fc's backward products read. Weight
 * decay applies to the matrices (c_attn, c_proj, c_fc, mlp c_proj, the embeddings and an untied
 * unembedding), not to biases or LayerNorm parameters. The parameters of each decay setting share
 * one allocation per role (values, gradients, moments), so the per-step work on all of them —
 * zeroing the gradients, the gradient norm, AdamW — is two calls each, whatever the depth.
 * The asynchronous methods (step, queueStep, evaluate, forwardBackward) share those buffers, so
 * calls made without awaiting run one after another in call order; the synchronous reads of state
 * are refused while one is pending.
 */
import { reduceSumInto } from '../ops.js';
import { type BackendName, resolveBackend } from '../backend.js';
import { Tensor, packedTensors } from '../tensor.js';
import type { Gpt2Config } from './config.js';
import { type CrossEntropyMode, resolveCrossEntropy } from './cross-entropy-mode.js';
import { activation, add, crossEntropy, embed, layerNorm, linear, linearQkv, linearT, type MatmulPrecision } from './ops.js';
import {
  activationBackward,
  adamW,
  attentionBackwardQkv,
  attentionForwardTrain,
  crossEntropyForwardBackward,
  embedBackward,
  layerNormBackward,
  linearBackward,
  linearTBackward,
  reluLinearBackward,
  unembedCrossEntropy,
  unembedCrossEntropyBackward,
} from './grad-ops.js';
import { type Gpt2LayerWeights, type Gpt2Weights, checkGpt2Weights } from './weights.js';

type LayerName = keyof Gpt2LayerWeights;
const LAYER_PARAMS: readonly LayerName[] = ['ln1W', 'ln1B', 'attnW', 'attnB', 'projW', 'projB', 'ln2W', 'ln2B', 'fcW', 'fcB', 'fcProjW', 'fcProjB'];
const DECAYED: ReadonlySet<LayerName> = new Set(['attnW', 'projW', 'fcW', 'fcProjW']);

export interface AdamWSettings {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Max global gradient L2 norm (0: no clipping). */
  clipGradNorm: number;
}

/** Throws unless `settings` holds every AdamW setting as a finite number. */
function checkSettings(settings: AdamWSettings): void {
  if (typeof settings !== 'object' || settings === null) throw new TypeError('the step needs its AdamW settings: { lr, beta1, beta2, eps, weightDecay, clipGradNorm }');
  for (const key of ['lr', 'beta1', 'beta2', 'eps', 'weightDecay', 'clipGradNorm'] as const) {
    const value = settings[key];
    if (typeof value !== 'number' || !Number.isFinite(value)) throw new RangeError(`settings.${key} must be a finite number (got ${String(value)})`);
  }
}

export interface LmStepResult {
  /** Mean next-token loss over positions with a target. */
  loss: number;
  /** Global gradient L2 norm before clipping. */
  gradNorm: number;
}

/** What readStats() returns: the steps queued since the last read. */
export interface LmQueuedStats {
  /** Each of those steps' mean loss, in order. */
  losses: number[];
  /** The last step's global gradient L2 norm before clipping (NaN when no step was queued). */
  gradNorm: number;
}

/** Steps whose losses wait on the backend; one more queued step reads them first. */
const QUEUED_LOSSES = 256;

/** One trainable parameter: its value, gradient and AdamW moments (views into its group's tensors). */
interface Param {
  name: string;
  value: Tensor;
  grad: Tensor;
  m: Tensor;
  v: Tensor;
  decay: boolean;
}

/**
 * The parameters with one weight-decay setting, packed: each of values, grads, m and v is one
 * allocation holding every parameter of the group (zero gaps between them), so zeroing the
 * gradients, their squared norm and the AdamW update take one call per group, not one per tensor.
 */
interface ParamGroup {
  decay: boolean;
  values: Tensor;
  grads: Tensor;
  m: Tensor;
  v: Tensor;
}

interface LayerActivations {
  x: Tensor; ln1: Tensor; ln1Mean: Tensor; ln1Rstd: Tensor; q: Tensor; k: Tensor; v: Tensor;
  z: Tensor; lse: Tensor; mid: Tensor; ln2: Tensor; ln2Mean: Tensor; ln2Rstd: Tensor;
  /** The MLP's pre-activations: post itself for ReLU (see the constructor). */
  pre: Tensor;
  post: Tensor;
}

export class Gpt2Training {
  readonly config: Gpt2Config;
  readonly backend: BackendName;
  readonly precision: MatmulPrecision;
  /** How the loss is taken (the option, or MONOSEMANTIC_CROSS_ENTROPY, resolved for this backend and precision). */
  readonly crossEntropy: CrossEntropyMode;
  readonly batch: number;
  readonly T: number;
  #params: Param[] = [];
  #groups: ParamGroup[] = [];
  #byName = new Map<string, Param>();
  #acts: LayerActivations[] = [];
  #buffers: Record<string, Tensor> = {};
  #owned: Tensor[] = [];
  #steps = 0;
  /** A ReLU MLP at bf16: c_proj's backward goes through the ReLU in one op, into a bf16 dpre. */
  readonly #reluBackward: boolean;
  /** Steps queued whose losses are still on the backend (slots of stepLosses), and losses read back early. */
  #queued = 0;
  #readBack: number[] = [];
  /** The asynchronous operations run one at a time, in call order (they share the buffers); how many are pending. */
  #queue: Promise<unknown> = Promise.resolve();
  #pending = 0;
  #disposed = false;

  constructor(
    config: Gpt2Config,
    weights: Gpt2Weights,
    options: { batch: number; T: number; backend?: BackendName; precision?: MatmulPrecision; crossEntropy?: CrossEntropyMode },
  ) {
    checkGpt2Weights(config, weights);
    this.config = config;
    this.backend = resolveBackend(options.backend);
    this.precision = options.precision ?? (this.backend === 'cuda' ? 'bf16' : 'f32');
    this.crossEntropy = resolveCrossEntropy(options.crossEntropy, this.backend, this.precision, config.dModel);
    this.#reluBackward = config.activation === 'relu' && this.precision === 'bf16';
    this.batch = options.batch;
    this.T = options.T;
    if (!Number.isSafeInteger(this.batch) || this.batch < 1) throw new RangeError(`batch must be a positive integer (got ${this.batch})`);
    if (!Number.isSafeInteger(this.T) || this.T < 2 || this.T > config.nPositions) throw new RangeError(`T must be in [2, ${config.nPositions}] (got ${this.T})`);
    const C = config.dModel;
    const M = config.dMlp;
    const rows = this.batch * this.T;
    const make = (shape: number[], dtype: 'f32' | 'bf16' | 'i32' = 'f32') => {
      const t = Tensor.empty(shape, { backend: this.backend, dtype });
      this.#owned.push(t);
      return t;
    };
    const specs: { name: string; data: Float32Array; shape: number[]; decay: boolean }[] = [];
    const param = (name: string, data: Float32Array, shape: number[], decay: boolean) => {
      const size = shape.reduce((a, b) => a * b, 1);
      if (data.length !== size) throw new RangeError(`${name} holds ${data.length} values; its shape [${shape.join(', ')}] needs ${size}`);
      specs.push({ name, data, shape, decay });
    };
    /** The parameters of one decay setting as a group; their Param entries in declaration order. */
    const pack = (decay: boolean) => {
      const members = specs.filter((s) => s.decay === decay);
      if (members.length === 0) return;
      const shapes = members.map((s) => s.shape);
      const packed = () => {
        const { whole, parts } = packedTensors(shapes, { backend: this.backend });
        this.#owned.push(whole, ...parts);
        return { whole, parts };
      };
      const [values, grads, m, v] = [packed(), packed(), packed(), packed()];
      this.#groups.push({ decay, values: values.whole, grads: grads.whole, m: m.whole, v: v.whole });
      members.forEach((s, i) => {
        values.parts[i]!.upload(s.data);
        this.#byName.set(s.name, { name: s.name, value: values.parts[i]!, grad: grads.parts[i]!, m: m.parts[i]!, v: v.parts[i]!, decay });
      });
    };
    try {
      param('wte', weights.wte, [config.vocabSize, C], true);
      param('wpe', weights.wpe, [config.nPositions, C], true);
      const shapes: Record<LayerName, number[]> = {
        ln1W: [C], ln1B: [C], attnW: [C, 3 * C], attnB: [3 * C], projW: [C, C], projB: [C],
        ln2W: [C], ln2B: [C], fcW: [C, M], fcB: [M], fcProjW: [M, C], fcProjB: [C],
      };
      weights.layers.forEach((layer, L) => {
        for (const name of LAYER_PARAMS) param(`h.${L}.${name}`, layer[name], shapes[name], DECAYED.has(name));
      });
      param('lnFW', weights.lnFW, [C], false);
      param('lnFB', weights.lnFB, [C], false);
      if (!config.tiedEmbeddings) {
        if (!weights.lmHead) throw new RangeError('an untied model needs lm_head weights');
        param('lmHead', weights.lmHead, [config.vocabSize, C], true);
      }
      pack(true);
      pack(false);
      this.#params = specs.map((s) => this.#byName.get(s.name)!);
      // The layer norms' outputs are read only as the operand x of linear layers and of their dW
      // products: at bf16 they are kept in bf16, what those products would round them to.
      const lnDtype = this.precision === 'bf16' ? 'bf16' : 'f32';
      for (let L = 0; L < config.nLayer; L++) {
        // A ReLU's output is read as the operand x of c_proj and its dW product, and for its own
        // derivative (post > 0, which bf16 keeps for every value above 2^-133): at bf16 it is kept
        // in bf16 too.
        const post = make([rows, M], config.activation === 'relu' ? lnDtype : 'f32');
        this.#acts.push({
          x: make([rows, C]), ln1: make([rows, C], lnDtype), ln1Mean: make([rows]), ln1Rstd: make([rows]),
          q: make([rows, C]), k: make([rows, C]), v: make([rows, C]), z: make([rows, C]), lse: make([this.batch, config.nHead, this.T]),
          mid: make([rows, C]), ln2: make([rows, C], lnDtype), ln2Mean: make([rows]), ln2Rstd: make([rows]), post,
          // ReLU's derivative reads as well from its output (post > 0 exactly where pre > 0, NaN
          // included): its pre-activations are not kept, and the ReLU goes with the bias (fused on CUDA).
          pre: config.activation === 'relu' ? post : make([rows, M]),
        });
      }
      this.#buffers = {
        ids: make([rows], 'i32'), targets: make([rows], 'i32'), xFinal: make([rows, C]),
        lnF: make([rows, C], lnDtype), lnFMean: make([rows]), lnFRstd: make([rows]), losses: make([rows]),
        // At bf16 the unembedding writes its logits in bf16 (as autocast does), and the loss's
        // gradient replaces them: the bf16 operand of the unembedding's backward products. Fused
        // (bf16 only) leaves the logits unformed, and the gradient goes there.
        logits: make([rows, config.vocabSize], this.precision === 'bf16' ? 'bf16' : 'f32'),
        branch: make([rows, C]), dres: make([rows, C]), dC: make([rows, C]), dz: make([rows, C]),
        dqkv: make([rows, 3 * C]),
        // The gradients of the MLP's output and pre-activations; through a ReLU at bf16 only the
        // latter, in bf16.
        ...(this.#reluBackward ? { dpre: make([rows, M], 'bf16') } : { dpost: make([rows, M]), dpre: make([rows, M]) }),
        // The queued steps' mean losses, and the last step's squared gradient norm, on the backend.
        stepLosses: make([QUEUED_LOSSES]), gradSumSquares: make([1]),
      };
      // Fused: each row's log-sum-exp of the logits, from the loss to its gradient.
      if (this.crossEntropy === 'fused') this.#buffers.logitsLse = make([rows]);
    } catch (error) {
      this.dispose();
      throw error;
    }
  }

  /** AdamW steps taken. */
  get steps(): number {
    return this.#steps;
  }

  /** The parameter tensors by name (wte, wpe, h.{L}.{ln1W, attnW, ...}, lnFW, lnFB, lmHead). */
  parameter(name: string): Tensor {
    const p = this.#byName.get(name);
    if (!p) throw new RangeError(`no parameter '${name}'`);
    return p.value;
  }

  /** The gradient left by the last forwardBackward() or step(), by parameter name. */
  gradient(name: string): Tensor {
    const p = this.#byName.get(name);
    if (!p) throw new RangeError(`no parameter '${name}'`);
    return p.grad;
  }

  get parameterNames(): string[] {
    return this.#params.map((p) => p.name);
  }

  /** Current weights as host arrays, in the Gpt2Weights layout (for saving). */
  readWeights(): Gpt2Weights {
    this.#idle('readWeights');
    const read = (name: string) => this.#byName.get(name)!.value.toArray() as Float32Array;
    return {
      wte: read('wte'),
      wpe: read('wpe'),
      layers: Array.from({ length: this.config.nLayer }, (_, L) => Object.fromEntries(LAYER_PARAMS.map((n) => [n, read(`h.${L}.${n}`)])) as unknown as Gpt2LayerWeights),
      lnFW: read('lnFW'),
      lnFB: read('lnFB'),
      lmHead: this.config.tiedEmbeddings ? null : read('lmHead'),
      sourceDtype: 'F32',
    };
  }

  /** Checks ids and targets [B, T] and uploads them; returns the number of positions with a target. */
  #upload(ids: Int32Array, targets: Int32Array): number {
    const cfg = this.config;
    const rows = this.batch * this.T;
    if (ids.length !== rows || targets.length !== rows) throw new RangeError(`ids and targets must hold ${this.batch} × ${this.T} = ${rows} tokens (got ${ids.length} and ${targets.length})`);
    let valid = 0;
    for (let i = 0; i < rows; i++) {
      if (ids[i]! < 0 || ids[i]! >= cfg.vocabSize) throw new RangeError(`ids[${i}] = ${ids[i]} is outside the vocabulary [0, ${cfg.vocabSize})`);
      if (targets[i]! >= cfg.vocabSize || targets[i]! < -1) throw new RangeError(`targets[${i}] = ${targets[i]} is outside the vocabulary [0, ${cfg.vocabSize}) and is not −1 (no target)`);
      if (targets[i]! >= 0) valid++;
    }
    if (valid === 0) throw new RangeError('no position has a target');
    this.#buffers.ids!.upload(ids);
    this.#buffers.targets!.upload(targets);
    return valid;
  }

  /**
   * The forward pass on the uploaded ids, saving what the backward needs; leaves the logits in their
   * buffer, or (fused) stops at the final layer norm, lnF.
   */
  async #forward(): Promise<void> {
    const cfg = this.config;
    const { batch: B, T } = this;
    const b = this.#buffers as Record<string, Tensor>;
    const p = (name: string) => this.#byName.get(name)!;
    const prec = this.precision;
    const eps = cfg.layerNormEps;
    // #upload checked the ids and targets on the host: the ops need not check them on the device.
    // The residual stream starts from the sum of the token and position rows (written as one).
    await embed(b.ids!, B, T, p('wte').value, p('wpe').value, 0, this.#acts[0]?.x ?? b.xFinal!, null, { indicesChecked: true });
    for (let L = 0; L < cfg.nLayer; L++) {
      const a = this.#acts[L]!;
      const w = (n: LayerName) => p(`h.${L}.${n}`).value;
      const next = L + 1 < cfg.nLayer ? this.#acts[L + 1]!.x : b.xFinal!;
      await layerNorm(a.x, w('ln1W'), w('ln1B'), eps, a.ln1, { mean: a.ln1Mean, rstd: a.ln1Rstd });
      // q, k and v [rows, C] each: linear's product split as splitQkvTrain splits it.
      await linearQkv(a.ln1, w('attnW'), w('attnB'), B, T, cfg.dModel, a.q, a.k, a.v, T, 0, prec);
      await attentionForwardTrain(a.q, a.k, a.v, B, T, cfg.nHead, a.z, a.lse, prec);
      await linear(a.z, w('projW'), w('projB'), b.branch!, prec);
      await add(a.x, b.branch!, a.mid);
      await layerNorm(a.mid, w('ln2W'), w('ln2B'), eps, a.ln2, { mean: a.ln2Mean, rstd: a.ln2Rstd });
      if (a.pre === a.post) {
        await linear(a.ln2, w('fcW'), w('fcB'), a.post, prec, { activation: 'relu' });
      } else {
        await linear(a.ln2, w('fcW'), w('fcB'), a.pre, prec);
        await activation(cfg.activation, a.pre, a.post);
      }
      await linear(a.post, w('fcProjW'), w('fcProjB'), b.branch!, prec);
      await add(a.mid, b.branch!, next);
    }
    await layerNorm(b.xFinal!, p('lnFW').value, p('lnFB').value, eps, b.lnF!, { mean: b.lnFMean!, rstd: b.lnFRstd! });
    if (this.crossEntropy === 'logits') await linearT(b.lnF!, this.#unembedding().value, null, b.logits!, prec);
  }

  /** The unembedding: the token embedding (tied) or lm_head. */
  #unembedding(): Param {
    return this.#byName.get(this.config.tiedEmbeddings ? 'wte' : 'lmHead')!;
  }

  /**
   * The loss on ids [B, T] with targets [B, T] (−1: no target) without changing anything but
   * scratch buffers: the sum of the per-position losses and the number of positions counted.
   */
  evaluate(ids: Int32Array, targets: Int32Array): Promise<{ sum: number; count: number }> {
    return this.#serial('evaluate', () => this.#evaluate(ids, targets));
  }

  async #evaluate(ids: Int32Array, targets: Int32Array): Promise<{ sum: number; count: number }> {
    const count = this.#upload(ids, targets);
    await this.#forward();
    const b = this.#buffers;
    if (this.crossEntropy === 'fused') {
      await unembedCrossEntropy(b.lnF!, this.#unembedding().value, b.targets!, b.logitsLse!, b.losses!, this.precision, { indicesChecked: true });
    } else {
      await crossEntropy(b.logits!, b.targets!, b.losses!, { indicesChecked: true });
    }
    let sum = 0;
    for (const l of b.losses!.toArray() as Float32Array) sum += l;
    return { sum, count };
  }

  /** Parameters, AdamW moments and the step count as host arrays, by parameter name (for checkpoints). */
  readState(): { steps: number; tensors: { name: string; shape: number[]; value: Float32Array; m: Float32Array; v: Float32Array }[] } {
    this.#idle('readState');
    return {
      steps: this.#steps,
      tensors: this.#params.map((p) => ({
        name: p.name,
        shape: [...p.value.shape],
        value: p.value.toArray() as Float32Array,
        m: p.m.toArray() as Float32Array,
        v: p.v.toArray() as Float32Array,
      })),
    };
  }

  /** Restores what readState() returned (every parameter, with matching sizes). */
  writeState(state: { steps: number; tensors: { name: string; value: Float32Array; m: Float32Array; v: Float32Array }[] }): void {
    this.#idle('writeState');
    if (!Number.isSafeInteger(state.steps) || state.steps < 0) throw new RangeError(`steps must be a non-negative integer (got ${state.steps})`);
    const given = new Map(state.tensors.map((t) => [t.name, t]));
    for (const p of this.#params) {
      const t = given.get(p.name);
      if (!t) throw new RangeError(`the state has no parameter '${p.name}'`);
      for (const [what, array] of [['value', t.value], ['m', t.m], ['v', t.v]] as const) {
        if (array.length !== p.value.size) throw new RangeError(`${p.name}.${what} holds ${array.length} values; the parameter has ${p.value.size}`);
      }
    }
    if (given.size !== this.#params.length) throw new RangeError(`the state holds ${given.size} parameters; the model has ${this.#params.length}`);
    for (const p of this.#params) {
      const t = given.get(p.name)!;
      p.value.upload(t.value);
      p.m.upload(t.m);
      p.v.upload(t.v);
    }
    this.#steps = state.steps;
  }

  /**
   * Forward and backward on ids [B, T] with next-token targets [B, T] (−1: no target). Leaves the
   * gradients of the mean loss in gradient(name) (they are zeroed first). Returns the mean loss.
   */
  forwardBackward(ids: Int32Array, targets: Int32Array): Promise<number> {
    return this.#serial('forwardBackward', async () => {
      const valid = await this.#forwardBackward(ids, targets);
      let sum = 0;
      for (const l of this.#buffers.losses!.toArray() as Float32Array) sum += l;
      return sum / valid;
    });
  }

  /**
   * Queues forward and backward on ids [B, T] with next-token targets [B, T] (the gradients of the
   * mean loss, zeroed first); the per-position losses stay in their buffer. Returns the number of
   * positions with a target.
   */
  async #forwardBackward(ids: Int32Array, targets: Int32Array): Promise<number> {
    const cfg = this.config;
    const { batch: B, T } = this;
    const valid = this.#upload(ids, targets);
    const b = this.#buffers as Record<string, Tensor>;
    const p = (name: string) => this.#byName.get(name)!;
    for (const group of this.#groups) group.grads.fill(0);
    const prec = this.precision;
    await this.#forward();
    const unembed = this.#unembedding();
    // The gradient of the mean loss with respect to the logits, in the logits' buffer (fp32, or bf16:
    // the products' operand as it is): in place of the logits, or (fused) from lnF and the lse.
    const dlogits = b.logits!;
    if (this.crossEntropy === 'fused') {
      await unembedCrossEntropy(b.lnF!, unembed.value, b.targets!, b.logitsLse!, b.losses!, prec, { indicesChecked: true });
      await unembedCrossEntropyBackward(b.lnF!, unembed.value, b.targets!, b.logitsLse!, 1 / valid, dlogits, prec, { indicesChecked: true });
    } else {
      await crossEntropyForwardBackward(b.logits!, b.targets!, b.losses!, 1 / valid, { indicesChecked: true });
    }

    // ---- backward
    await linearTBackward(dlogits, b.lnF!, unembed.value, b.dC!, unembed.grad, prec);
    await layerNormBackward(b.dC!, b.xFinal!, p('lnFW').value, b.lnFMean!, b.lnFRstd!, b.dres!, p('lnFW').grad, p('lnFB').grad, false);
    for (let L = cfg.nLayer - 1; L >= 0; L--) {
      const a = this.#acts[L]!;
      const w = (n: LayerName) => p(`h.${L}.${n}`).value;
      const g = (n: LayerName) => p(`h.${L}.${n}`).grad;
      // dres = d(x_{L+1}); x_{L+1} = mid + c_proj(act(c_fc(ln2(mid))))
      if (this.#reluBackward) {
        // dpre (bf16) = (dres c_projᵀ) where post > 0; c_fc's bias gradient from it before rounding.
        await reluLinearBackward(b.dres!, a.post, w('fcProjW'), b.dpre!, g('fcProjW'), g('fcProjB'), g('fcB'));
        await linearBackward(b.dpre!, a.ln2, w('fcW'), b.dC!, g('fcW'), null, prec);
      } else {
        await linearBackward(b.dres!, a.post, w('fcProjW'), b.dpost!, g('fcProjW'), g('fcProjB'), prec);
        await activationBackward(cfg.activation, b.dpost!, a.pre, b.dpre!);
        await linearBackward(b.dpre!, a.ln2, w('fcW'), b.dC!, g('fcW'), g('fcB'), prec);
      }
      await layerNormBackward(b.dC!, a.mid, w('ln2W'), a.ln2Mean, a.ln2Rstd, b.dres!, g('ln2W'), g('ln2B'), true);
      // dres = d(mid); mid = x + c_proj(attn(c_attn(ln1(x))))
      await linearBackward(b.dres!, a.z, w('projW'), b.dz!, g('projW'), g('projB'), prec);
      await attentionBackwardQkv(b.dz!, a.q, a.k, a.v, a.z, a.lse, B, T, cfg.nHead, b.dqkv!, prec);
      await linearBackward(b.dqkv!, a.ln1, w('attnW'), b.dC!, g('attnW'), g('attnB'), prec);
      await layerNormBackward(b.dC!, a.x, w('ln1W'), a.ln1Mean, a.ln1Rstd, b.dres!, g('ln1W'), g('ln1B'), true);
    }
    // dres = d(x_0) = d(tok + pos)
    await embedBackward(b.ids!, B, T, b.dres!, b.dres!, p('wte').grad, p('wpe').grad, { indicesChecked: true });
    return valid;
  }

  /**
   * forwardBackward, then global-norm clipping and one AdamW step, all queued: the loss and the
   * gradient norm stay on the backend until readStats(), and clipping reads the norm there, so on
   * CUDA nothing waits for the device.
   */
  queueStep(ids: Int32Array, targets: Int32Array, settings: AdamWSettings): Promise<void> {
    checkSettings(settings);
    return this.#serial('queueStep', () => this.#queueStep(ids, targets, settings));
  }

  async #queueStep(ids: Int32Array, targets: Int32Array, settings: AdamWSettings): Promise<void> {
    if (this.#queued === QUEUED_LOSSES) this.#readLosses();
    const valid = await this.#forwardBackward(ids, targets);
    const b = this.#buffers;
    await reduceSumInto(b.losses!, b.stepLosses!, { scale: 1 / valid, index: this.#queued });
    for (const [i, group] of this.#groups.entries()) await reduceSumInto(group.grads, b.gradSumSquares!, { square: true, accumulate: i > 0 });
    this.#steps += 1;
    this.#queued += 1;
    for (const group of this.#groups) {
      await adamW(group.values, group.grads, group.m, group.v, {
        lr: settings.lr,
        beta1: settings.beta1,
        beta2: settings.beta2,
        eps: settings.eps,
        weightDecay: group.decay ? settings.weightDecay : 0,
        step: this.#steps,
        ...(settings.clipGradNorm > 0 ? { clip: { sumSquares: b.gradSumSquares!, maxNorm: settings.clipGradNorm } } : {}),
      });
    }
  }

  /** The statistics of the steps queued since the last read (a wait for the backend). */
  readStats(): LmQueuedStats {
    this.#idle('readStats');
    this.#readLosses();
    const losses = this.#readBack;
    this.#readBack = [];
    const gradNorm = losses.length > 0 ? Math.sqrt((this.#buffers.gradSumSquares!.toArray() as Float32Array)[0]!) : Number.NaN;
    return { losses, gradNorm };
  }

  /** Moves the queued steps' losses to the host. */
  #readLosses(): void {
    if (this.#queued === 0) return;
    const all = this.#buffers.stepLosses!.toArray() as Float32Array;
    this.#readBack.push(...all.subarray(0, this.#queued));
    this.#queued = 0;
  }

  /** One step, completed: queueStep, then its loss and gradient norm. */
  step(ids: Int32Array, targets: Int32Array, settings: AdamWSettings): Promise<LmStepResult> {
    checkSettings(settings);
    return this.#serial('step', async () => {
      await this.#queueStep(ids, targets, settings);
      this.#readLosses();
      const losses = this.#readBack;
      this.#readBack = [];
      const gradNorm = Math.sqrt((this.#buffers.gradSumSquares!.toArray() as Float32Array)[0]!);
      return { loss: losses.at(-1)!, gradNorm };
    });
  }

  /** Runs `operation` after every operation called before it; the buffers are this model's alone meanwhile. */
  #serial<T>(what: string, operation: () => Promise<T>): Promise<T> {
    this.#live(what);
    this.#pending += 1;
    const run = this.#queue
      .then(() => {
        this.#live(what);
        return operation();
      })
      .finally(() => {
        this.#pending -= 1;
      });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** For the synchronous methods that read or write state: refused while an operation is pending. */
  #idle(what: string): void {
    this.#live(what);
    if (this.#pending > 0) throw new TypeError(`Gpt2Training.${what} was called while a step or evaluation is still running: await it first`);
  }

  #live(what: string): void {
    if (this.#disposed) throw new TypeError(`Gpt2Training.${what}: this Gpt2Training has been disposed`);
  }

  /** Frees every tensor (idempotent). Operations still pending fail. */
  dispose(): void {
    this.#disposed = true;
    for (const t of this.#owned) t.dispose();
    this.#owned = [];
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
