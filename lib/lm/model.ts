/**
 * A GPT-2-family transformer on the native backends: learned positions, pre-LayerNorm blocks of
 * causal multi-head attention and an MLP, tied or untied unembedding.
 *
 * The forward pass is orchestrated here, one native op per step (lib/lm/ops.ts), so every
 * TransformerLens hook point (lib/lm/hooks.ts) is a place where an activation [B·T, width] can be
 * captured (returned as a device tensor) or changed in place by an intervention. A forward that
 * only captures stops right after the last hook it needs (no unembedding for harvesting).
 *
 * Keys and values are written to a cache [B, Tmax, C] per layer, so generation runs each new
 * token through the model once (KvCache). Matrix products run in 'f32' or 'bf16' (bf16 operands,
 * fp32 accumulation), and so may attention's two products on CUDA (lib/lm/ops.ts attention);
 * everything else is fp32, but for what only feeds a bf16 product at 'bf16' — the layer norms'
 * outputs, the attention's output z and the activations of an MLP whose hooks no one looks at —
 * which is written in bf16, the operand the product would round it to. Where no one looks at a
 * branch (hook_attn_out, hook_mlp_out), its product adds itself to the residual stream (linear's
 * accumulate: the same sum as add()); q, k and v come out of one call (linearQkv).
 * A captured activation is the caller's: a copy, or the forward's own buffer where it stops there.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

import { type BackendName, resolveBackend } from '../backend.js';
import { gatherRows } from '../ops.js';
import { type DType, Tensor } from '../tensor.js';
import { type Gpt2Config, ModelConfigError, loadGpt2Config } from './config.js';
import { resolveCrossEntropy } from './cross-entropy-mode.js';
import { modelFolderProblem } from './default-model.js';
import { unembedCrossEntropy } from './grad-ops.js';
import { type HookPoint, hookPoint, hookPoints } from './hooks.js';
import { type MatmulPrecision, activation, add, attention, crossEntropy, embed, layerNorm, linear, linearQkv, linearT } from './ops.js';
import { firstOutOfVocabulary, lossesWithTargets, nextTokenTargets } from './tokens.js';
import { type Gpt2Weights, checkGpt2Weights, loadGpt2Weights } from './weights.js';

/** Where an intervention is applied: the activation is [batch × T, width], row b·T + t. */
export interface HookContext {
  hook: string;
  batch: number;
  /** Positions in this forward (new tokens when generating with a cache). */
  T: number;
  /** Absolute position of the first of them. */
  positionOffset: number;
}

/** Changes an activation in place (write the result into `activation`). */
export type Intervention = (activation: Tensor, context: HookContext) => Promise<void> | void;

export interface ForwardOptions {
  /** Hooks whose activations are returned (copies; the caller disposes them). */
  capture?: readonly string[];
  /** Interventions by hook name, applied before capture at the same hook. */
  interventions?: Readonly<Record<string, Intervention>>;
  /**
   * Return the logits [batch × T, vocab] (the caller disposes them); 'last': only each sequence's
   * last position's, [batch, vocab] (what a generation step reads), the rest never computed.
   */
  logits?: boolean | 'last';
  /**
   * The dtype the unembedding writes its logits in, returned or used only for the loss: 'f32' (the
   * default) or, at precision 'bf16', 'bf16' — rounded as the product writes them, as HF returns them
   * under bf16 autocast: half the memory, and half the bytes to write and for the loss to read.
   */
  logitsDType?: 'f32' | 'bf16';
  /**
   * Return the next-token cross-entropy of every position but the last, [batch, T − 1]. Without
   * logits, and where MONOSEMANTIC_CROSS_ENTROPY=fused applies (lib/lm/cross-entropy-mode.ts), the
   * unembedding product is fused into the loss and no logits are formed (logitsDType unused).
   */
  loss?: boolean;
  /** Continue the sequences held in this cache (their length is the position offset); the forward then runs to the end. */
  cache?: KvCache;
}

export interface ForwardResult {
  captured: Record<string, Tensor>;
  logits: Tensor | null;
  /** Per-token loss [batch, T − 1] (row-major) and its mean, when asked for. */
  loss: { perToken: Float32Array; mean: number } | null;
}

interface DeviceLayer {
  ln1W: Tensor; ln1B: Tensor; attnW: Tensor; attnB: Tensor; projW: Tensor; projB: Tensor;
  ln2W: Tensor; ln2B: Tensor; fcW: Tensor; fcB: Tensor; fcProjW: Tensor; fcProjB: Tensor;
}

/** Keys and values of every layer for `batch` sequences of up to `capacity` positions. */
export class KvCache {
  readonly batch: number;
  readonly capacity: number;
  /** What it was made for: a model of this depth and width, on this backend. */
  readonly nLayer: number;
  readonly dModel: number;
  readonly backend: BackendName;
  /** Positions filled so far (the same for every sequence). */
  length = 0;
  readonly keys: Tensor[];
  readonly values: Tensor[];

  constructor(config: Gpt2Config, batch: number, capacity: number, backend: BackendName) {
    if (!Number.isSafeInteger(batch) || batch < 1) throw new RangeError(`batch must be a positive integer (got ${batch})`);
    if (!Number.isSafeInteger(capacity) || capacity < 1 || capacity > config.nPositions) {
      throw new RangeError(`cache capacity must be in [1, ${config.nPositions}] (the model's n_positions; got ${capacity})`);
    }
    this.batch = batch;
    this.capacity = capacity;
    this.nLayer = config.nLayer;
    this.dModel = config.dModel;
    this.backend = backend;
    this.keys = [];
    this.values = [];
    try {
      for (let L = 0; L < config.nLayer; L++) {
        this.keys.push(Tensor.empty([batch, capacity, config.dModel], { backend }));
        this.values.push(Tensor.empty([batch, capacity, config.dModel], { backend }));
      }
    } catch (error) {
      this.dispose();
      throw error;
    }
  }

  get disposed(): boolean {
    return this.keys.some((t) => t.disposed) || this.values.some((t) => t.disposed);
  }

  dispose(): void {
    for (const t of [...this.keys, ...this.values]) t.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** The model whose interventions are running in this async context (a forward from inside one of them would wait for itself). */
const interventionOf = new AsyncLocalStorage<Gpt2Model>();

export interface ModelOptions {
  backend?: BackendName;
  precision?: MatmulPrecision;
}

export class Gpt2Model {
  readonly config: Gpt2Config;
  readonly backend: BackendName;
  readonly precision: MatmulPrecision;
  readonly hooks: readonly HookPoint[];
  #wte: Tensor;
  #wpe: Tensor;
  #layers: DeviceLayer[];
  #lnFW: Tensor;
  #lnFB: Tensor;
  #unembed: Tensor; // [V, C]: wte when tied, lm_head otherwise
  #owned: Tensor[] = [];
  /** Scratch tensors reused across forwards while their shape fits (forwards run one at a time). */
  #scratch = new Map<string, Tensor>();
  /** The keys and values of a forward given no cache, reused while batch and T stay the same. */
  #ownCache: KvCache | null = null;
  #queue: Promise<unknown> = Promise.resolve();
  #disposed = false;

  private constructor(config: Gpt2Config, weights: Gpt2Weights, options: ModelOptions) {
    this.config = Object.freeze({ ...config }); // the forward reads it on every call: a caller's later change must not reach it
    this.backend = resolveBackend(options.backend);
    this.precision = options.precision ?? (this.backend === 'cuda' ? 'bf16' : 'f32');
    if (this.precision !== 'f32' && this.precision !== 'bf16') throw new TypeError(`precision must be 'f32' or 'bf16' (got ${JSON.stringify(this.precision)})`);
    checkGpt2Weights(config, weights);
    this.hooks = hookPoints(config);
    const C = config.dModel;
    const M = config.dMlp;
    const up = (data: Float32Array, shape: number[]) => {
      const t = Tensor.from(data, shape, { backend: this.backend });
      this.#owned.push(t);
      return t;
    };
    try {
      this.#wte = up(weights.wte, [config.vocabSize, C]);
      this.#wpe = up(weights.wpe, [config.nPositions, C]);
      this.#layers = weights.layers.map((l) => ({
        ln1W: up(l.ln1W, [C]), ln1B: up(l.ln1B, [C]),
        attnW: up(l.attnW, [C, 3 * C]), attnB: up(l.attnB, [3 * C]),
        projW: up(l.projW, [C, C]), projB: up(l.projB, [C]),
        ln2W: up(l.ln2W, [C]), ln2B: up(l.ln2B, [C]),
        fcW: up(l.fcW, [C, M]), fcB: up(l.fcB, [M]),
        fcProjW: up(l.fcProjW, [M, C]), fcProjB: up(l.fcProjB, [C]),
      }));
      this.#lnFW = up(weights.lnFW, [C]);
      this.#lnFB = up(weights.lnFB, [C]);
      this.#unembed = config.tiedEmbeddings ? this.#wte : up(weights.lmHead!, [config.vocabSize, C]);
    } catch (error) {
      for (const t of this.#owned) t.dispose();
      throw error;
    }
  }

  /** A model from an HF directory (config.json + model.safetensors). */
  static async load(dir: string, options: ModelOptions = {}): Promise<Gpt2Model> {
    const problem = await modelFolderProblem(dir);
    if (problem !== null) throw new ModelConfigError(dir, undefined, problem);
    const config = await loadGpt2Config(dir);
    const weights = await loadGpt2Weights(dir, config);
    return new Gpt2Model(config, weights, options);
  }

  static fromWeights(config: Gpt2Config, weights: Gpt2Weights, options: ModelOptions = {}): Gpt2Model {
    return new Gpt2Model(config, weights, options);
  }

  /** A cache for `batch` sequences of up to `capacity` positions (default: n_positions). */
  createCache(batch: number, capacity = this.config.nPositions): KvCache {
    this.#live();
    return new KvCache(this.config, batch, capacity, this.backend);
  }

  /**
   * Runs token ids [batch, T] (row-major; i32 values in [0, vocab)) through the model.
   * Without logits or loss, stops right after the last hook captured or intervened on.
   */
  forward(ids: Int32Array, batch: number, options: ForwardOptions = {}): Promise<ForwardResult> {
    this.#live();
    if (interventionOf.getStore() === this) {
      throw new TypeError('Gpt2Model.forward was called from inside one of its own interventions, where it would wait for itself; use another model, or run it after this forward');
    }
    // Forwards on one model run one after another: they share its scratch tensors.
    const run = this.#queue.then(() => this.#forward(ids, batch, options));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #forward(ids: Int32Array, batch: number, options: ForwardOptions): Promise<ForwardResult> {
    this.#live();
    const cfg = this.config;
    if (!(ids instanceof Int32Array)) throw new TypeError('ids must be an Int32Array of token ids [batch, T]');
    if (!Number.isSafeInteger(batch) || batch < 1 || ids.length % batch !== 0 || ids.length === 0) {
      throw new RangeError(`ids hold ${ids.length} tokens, not a positive multiple of batch ${batch}`);
    }
    const T = ids.length / batch;
    const bad = firstOutOfVocabulary(ids, cfg.vocabSize);
    if (bad >= 0) throw new RangeError(`ids[${bad}] = ${ids[bad]} is outside the vocabulary [0, ${cfg.vocabSize})`);
    if (options.capture !== undefined && !Array.isArray(options.capture)) throw new TypeError('capture must be an array of hook names');
    for (const [name, fn] of Object.entries(options.interventions ?? {})) {
      if (typeof fn !== 'function') throw new TypeError(`the intervention at ${name} must be a function (activation, context) => void`);
    }
    const cache = options.cache;
    const offset = cache?.length ?? 0;
    if (cache !== undefined) {
      if (!(cache instanceof KvCache)) throw new TypeError('cache must be a KvCache (model.createCache)');
      if (cache.disposed) throw new TypeError('the cache has been disposed');
      if (cache.nLayer !== cfg.nLayer || cache.dModel !== cfg.dModel || cache.backend !== this.backend) {
        throw new RangeError(`the cache was made for a model of ${cache.nLayer} layers and width ${cache.dModel} on ${cache.backend}; this one has ${cfg.nLayer} layers and width ${cfg.dModel} on ${this.backend}`);
      }
      if (cache.batch !== batch) throw new RangeError(`the cache holds ${cache.batch} sequences; ids hold ${batch}`);
      if (offset + T > cache.capacity) throw new RangeError(`${offset} cached + ${T} new positions exceed the cache's capacity ${cache.capacity}`);
    } else if (T > cfg.nPositions) {
      throw new RangeError(`T = ${T} exceeds the model's n_positions ${cfg.nPositions}`);
    }
    if (options.loss && T < 2) throw new RangeError('the loss needs at least 2 positions per sequence');
    if (options.logits !== undefined && typeof options.logits !== 'boolean' && options.logits !== 'last') throw new TypeError(`logits must be true, false or 'last' (got ${String(options.logits)})`);
    if (options.logits === 'last' && options.loss) throw new RangeError("logits: 'last' leaves out the logits the loss needs; ask for logits: true");
    const logitsDType = options.logitsDType ?? 'f32';
    if (logitsDType !== 'f32' && logitsDType !== 'bf16') throw new TypeError(`logitsDType must be 'f32' or 'bf16' (got ${String(options.logitsDType)})`);
    if (logitsDType === 'bf16' && this.precision !== 'bf16') throw new RangeError(`logitsDType 'bf16' needs the model's precision 'bf16' (it is '${this.precision}')`);
    const interventions = options.interventions ?? {};
    const capture = new Set(options.capture ?? []);
    for (const name of [...capture, ...Object.keys(interventions)]) hookPoint(cfg, name);
    // A forward with a cache always runs to the end, so every layer's keys and values are stored.
    const needOutput = options.logits === true || options.logits === 'last' || options.loss === true || cache !== undefined;
    const needed = [...capture, ...Object.keys(interventions)].map((n) => hookPoint(cfg, n).order);
    const stopOrder = needOutput ? Infinity : needed.length ? Math.max(...needed) : -1;
    if (!needOutput && stopOrder < 0) throw new RangeError('nothing to compute: ask for logits, loss, or a hook to capture');

    const rows = batch * T;
    const C = cfg.dModel;
    const tmp = (slot: string, shape: number[], dtype: DType = 'f32') => this.#scratchTensor(slot, shape, dtype);
    const captured: Record<string, Tensor> = {};
    const context = (hook: string): HookContext => ({ hook, batch, T, positionOffset: offset });
    /** Applies the hook point `name` to x; true when the forward can stop here. */
    const at = async (name: string, x: Tensor): Promise<boolean> => {
      const intervention = interventions[name];
      if (intervention) {
        await interventionOf.run(this, () => intervention(x, context(name)));
        if (x.disposed) throw new TypeError(`the intervention at ${name} disposed the activation it was given (the forward owns it: change it in place)`);
      }
      const stop = hookPoint(cfg, name).order >= stopOrder;
      if (capture.has(name)) {
        // The forward ends here: nothing writes x again, so a scratch x is handed over (the next
        // forward allocates its own) instead of copied. Otherwise a copy.
        const slot = stop ? this.#scratchSlot(x) : undefined;
        if (slot !== undefined) {
          this.#scratch.delete(slot);
          captured[name] = x;
        } else {
          const copy = Tensor.empty(x.shape, { backend: this.backend });
          copy.copyFrom(x);
          captured[name] = copy;
        }
      }
      return stop;
    };
    let logits: Tensor | null = null;
    try {
      const kv = cache ?? this.#cacheFor(batch, T);
      const idsT = tmp('ids', [rows], 'i32');
      idsT.upload(ids);
      const done = () => ({ captured, logits: null, loss: null });
      const resid = tmp('resid', [rows, C]);
      // The ids were checked above: the device need not check them again (on CUDA that would wait for it).
      const checked = { indicesChecked: true };
      if (['hook_embed', 'hook_pos_embed'].some((h) => capture.has(h) || interventions[h])) {
        const tok = tmp('tok', [rows, C]);
        const pos = tmp('pos', [rows, C]);
        await embed(idsT, batch, T, this.#wte, this.#wpe, offset, tok, pos, checked);
        if (await at('hook_embed', tok)) return done();
        if (await at('hook_pos_embed', pos)) return done();
        await add(tok, pos, resid);
      } else {
        await embed(idsT, batch, T, this.#wte, this.#wpe, offset, resid, null, checked); // their sum only
      }
      // The layer norms' outputs feed bf16 products only (but the final one's, where its hook is
      // looked at): at 'bf16' they are written in bf16, the operands the products would round them to.
      const normed = this.precision === 'bf16' ? tmp('normedBf', [rows, C], 'bf16') : tmp('normed', [rows, C]);
      const q = tmp('q', [rows, C]);
      const z = tmp('z', [rows, C]);
      const branch = tmp('branch', [rows, C]);
      const pre = tmp('pre', [rows, cfg.dMlp]);
      const post = tmp('post', [rows, cfg.dMlp]);
      for (let L = 0; L < cfg.nLayer; L++) {
        const w = this.#layers[L]!;
        const p = `blocks.${L}.`;
        if (await at(`${p}hook_resid_pre`, resid)) return done();
        await layerNorm(resid, w.ln1W, w.ln1B, cfg.layerNormEps, normed);
        await linearQkv(normed, w.attnW, w.attnB, batch, T, C, q, kv.keys[L]!, kv.values[L]!, kv.capacity, offset, this.precision);
        const looked = (hook: string) => capture.has(`${p}${hook}`) || interventions[`${p}${hook}`] !== undefined;
        // No one looks at z: at bf16 it goes to the output product in bf16, the operand it would round it to.
        const zOut = this.precision === 'bf16' && !looked('attn.hook_z') ? tmp('zBf', [rows, C], 'bf16') : z;
        await attention(q, kv.keys[L]!, kv.values[L]!, batch, T, kv.capacity, offset, cfg.nHead, zOut, this.precision);
        if (zOut === z && (await at(`${p}attn.hook_z`, z))) return done();
        /** resid += x W + b; through `branch` and its hook when someone looks at it, else added by the product itself (the same fp32 sum). */
        const addBranch = async (x: Tensor, W: Tensor, b: Tensor, hook: string): Promise<boolean> => {
          if (!looked(hook)) {
            await linear(x, W, b, resid, this.precision, { accumulate: true });
            return false;
          }
          await linear(x, W, b, branch, this.precision);
          if (await at(`${p}${hook}`, branch)) return true;
          await add(resid, branch, resid);
          return false;
        };
        if (await addBranch(zOut, w.projW, w.projB, 'hook_attn_out')) return done();
        if (await at(`${p}hook_resid_mid`, resid)) return done();
        await layerNorm(resid, w.ln2W, w.ln2B, cfg.layerNormEps, normed);
        let mlpIn: Tensor; // the MLP's activations, the output product's input
        if (this.precision === 'bf16' && !looked('mlp.hook_pre') && !looked('mlp.hook_post')) {
          // No one looks inside the MLP: its activations go to the output product in bf16, the
          // operand it would round them to (bias and activation in the first product's epilogue on CUDA).
          mlpIn = tmp('postBf', [rows, cfg.dMlp], 'bf16');
          await linear(normed, w.fcW, w.fcB, mlpIn, 'bf16', { activation: cfg.activation });
        } else {
          if (looked('mlp.hook_pre')) {
            await linear(normed, w.fcW, w.fcB, pre, this.precision);
            if (await at(`${p}mlp.hook_pre`, pre)) return done();
            await activation(cfg.activation, pre, post);
          } else {
            // No one looks at the pre-activations: the activation is applied with the bias (fused on CUDA).
            await linear(normed, w.fcW, w.fcB, post, this.precision, { activation: cfg.activation });
          }
          if (await at(`${p}mlp.hook_post`, post)) return done();
          mlpIn = post;
        }
        if (await addBranch(mlpIn, w.fcProjW, w.fcProjB, 'hook_mlp_out')) return done();
        if (await at(`${p}hook_resid_post`, resid)) return done();
      }
      const finalHook = 'ln_final.hook_normalized';
      const hooked = capture.has(finalHook) || interventions[finalHook] !== undefined;
      const lastOnly = options.logits === 'last';
      // Rows b·T + T − 1: each sequence's last position.
      const lastRows = () => {
        const idx = tmp('lastRows', [batch], 'i32');
        idx.upload(Int32Array.from({ length: batch }, (_, b) => b * T + T - 1));
        return idx;
      };
      let head: Tensor; // the unembedding's input: the final layer norm's output, of every row or of the last
      if (lastOnly && !hooked) {
        // The final layer norm of the last rows only (each row's is its own).
        const last = tmp('lastResid', [batch, C]);
        await gatherRows(resid, lastRows(), last, 0, { indicesChecked: true });
        head = this.precision === 'bf16' ? tmp('lastNormedBf', [batch, C], 'bf16') : tmp('lastNormed', [batch, C]);
        await layerNorm(last, this.#lnFW, this.#lnFB, cfg.layerNormEps, head);
      } else {
        const normedF = hooked ? tmp('normed', [rows, C]) : normed;
        await layerNorm(resid, this.#lnFW, this.#lnFB, cfg.layerNormEps, normedF);
        if (await at(finalHook, normedF)) return done();
        head = normedF;
        if (lastOnly) {
          head = tmp('lastNormed', [batch, C]); // normedF is f32 here (its hook looks at it)
          await gatherRows(normedF, lastRows(), head, 0, { indicesChecked: true });
        }
      }
      const logitRows = lastOnly ? batch : rows;
      // A loss without logits may fuse the unembedding product into the cross-entropy (no logits formed).
      const fused = options.loss === true && !options.logits && resolveCrossEntropy(undefined, this.backend, this.precision, C) === 'fused';
      if (!fused) {
        // Returned logits belong to the caller; logits only needed for the loss live in scratch.
        logits = options.logits
          ? Tensor.empty([logitRows, cfg.vocabSize], { backend: this.backend, dtype: logitsDType })
          : tmp('logits', [rows, cfg.vocabSize], logitsDType); // one slot: a change of dtype replaces it
        await linearT(head, this.#unembed, null, logits, this.precision);
      }
      if (cache) cache.length = offset + T;
      let loss: ForwardResult['loss'] = null;
      if (options.loss) {
        // Position t of sequence b predicts ids[b, t + 1]; the last position has no target (-1).
        const targetsT = tmp('targets', [rows], 'i32');
        targetsT.upload(nextTokenTargets(ids, batch, T));
        const perRow = tmp('lossPerRow', [rows]);
        if (fused) await unembedCrossEntropy(head, this.#unembed, targetsT, tmp('lossLse', [rows]), perRow, this.precision, { indicesChecked: true });
        else await crossEntropy(logits!, targetsT, perRow, { indicesChecked: true });
        loss = lossesWithTargets(perRow.toArray() as Float32Array, batch, T);
      }
      const result: ForwardResult = { captured, logits: options.logits ? logits : null, loss };
      logits = null;
      return result;
    } catch (error) {
      for (const t of Object.values(captured)) t.dispose();
      if (options.logits) logits?.dispose();
      if (this.#disposed) throw new TypeError('this Gpt2Model was disposed while its forward was running', { cause: error });
      throw error;
    }
  }

  /** The model's own cache for a forward of [batch, T] given none (keys and values of every layer). */
  #cacheFor(batch: number, T: number): KvCache {
    const held = this.#ownCache;
    if (held && held.batch === batch && held.capacity === T) {
      held.length = 0;
      return held;
    }
    held?.dispose();
    this.#ownCache = null; // and so it stays if the allocation below fails
    this.#ownCache = new KvCache(this.config, batch, T, this.backend);
    return this.#ownCache;
  }

  /** The scratch slot holding exactly tensor t, if any. */
  #scratchSlot(t: Tensor): string | undefined {
    for (const [slot, held] of this.#scratch) if (held === t) return slot;
    return undefined;
  }

  /** A scratch tensor of exactly `shape` for `slot`, reused while the shape stays the same. */
  #scratchTensor(slot: string, shape: number[], dtype: DType): Tensor {
    const held = this.#scratch.get(slot);
    if (held && !held.disposed && held.dtype === dtype && held.shape.length === shape.length && held.shape.every((d, i) => d === shape[i])) return held;
    held?.dispose();
    this.#scratch.delete(slot);
    const t = Tensor.empty(shape, { backend: this.backend, dtype });
    this.#scratch.set(slot, t);
    return t;
  }

  /** Frees the weights and scratch memory (idempotent). */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const t of this.#owned) t.dispose();
    for (const t of this.#scratch.values()) t.dispose();
    this.#scratch.clear();
    this.#ownCache?.dispose();
    this.#ownCache = null;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  #live(): void {
    if (this.#disposed) throw new TypeError('this Gpt2Model has been disposed');
  }
}
