/**
 * The native backward ops of a GPT-2 forward pass (lib/lm/ops.ts), plus AdamW, for training (as
 * llm.c): attention that saves its log-sum-exp and the flash-style attention backward, the q/k/v
 * split for training and its backward, layer norm, linear layers (also the tied unembedding, and a
 * linear layer's backward through the ReLU before it), activations, fused softmax cross-entropy with
 * its gradient, the unembedding product fused with the cross-entropy (no logits in memory), and the
 * embedding backward. Each runs on the operands' backend (CPU or CUDA), off the JavaScript thread,
 * and resolves when its outputs are written; operations on one backend run in call order.
 *
 * Conventions: gradients of parameters ACCUMULATE (+=), so layers and steps can share buffers (the
 * caller zeroes them); gradients of activations are OVERWRITTEN (=) unless an op says otherwise.
 * Tensors are whole tensors, f32 unless noted, all on one backend; a "[rows, C]" operand may have
 * any shape whose last dim is C and whose size is rows·C. An output may not be the same tensor as
 * another operand unless an op allows it. Argument problems throw TypeError / RangeError
 * synchronously, naming the argument; failures inside a backend (an out-of-range token id or
 * target, out of memory, a CUDA error) reject with a MonosemanticError.
 */
import { nativeAddon } from '../backend.js';
import { type IndexOptions, indicesCheckedOption } from '../ops.js';
import { type Tensor, formatShape } from '../tensor.js';
import {
  MAX_DIM,
  checkActivation,
  checkBool,
  checkInt,
  checkPrecision,
  checkTensor,
  expectRows,
  expectShape,
  expectSize,
  f32OrBf16,
  noAliases,
  rowsOf,
  sameBackend,
  sameOrDistinct,
} from './op-checks.js';
import type { Activation, MatmulPrecision } from './ops.js';

/** batch, T, nHead and the width C of q [batch·T, C] (nHead divides C). */
function attentionDims(q: Tensor, batch: number, T: number, nHead: number): { rows: number; C: number } {
  checkInt(batch, 'batch', 1);
  checkInt(T, 'T', 1);
  checkInt(nHead, 'nHead', 1);
  const rows = batch * T;
  if (rows > MAX_DIM) throw new RangeError(`batch · T must be at most 2^30 (got ${batch} · ${T})`);
  const [, C] = rowsOf(q, 'q');
  expectRows(q, 'q', rows, C, `(batch ${batch} · T ${T} rows)`);
  if (C % nHead !== 0) throw new RangeError(`nHead ${nHead} must divide C ${C} (the last dim of q ${formatShape(q.shape)})`);
  return { rows, C };
}

// ---- attention ----------------------------------------------------------------------------------

/**
 * Causal multi-head attention for training: lib/lm/ops.ts attention with offset 0 and Tmax = T
 * (no cache), q, k, v, out [B·T, C], that also saves lse [B, nHead, T] (any shape of that size):
 * for query t of head h in sequence b, lse[b, h, t] = log Σ_{j <= t} exp(q_t·k_j / √hd), which
 * attentionBackward needs. precision as in lib/lm/ops.ts attention; give attentionBackward the same.
 */
export function attentionForwardTrain(
  q: Tensor, k: Tensor, v: Tensor, batch: number, T: number, nHead: number, out: Tensor, lse: Tensor, precision: MatmulPrecision = 'f32',
): Promise<void> {
  const code = checkPrecision(precision);
  checkTensor(q, 'q');
  checkTensor(k, 'k');
  checkTensor(v, 'v');
  checkTensor(out, 'out');
  checkTensor(lse, 'lse');
  const { rows, C } = attentionDims(q, batch, T, nHead);
  const why = `like q ${formatShape(q.shape)}`;
  expectRows(k, 'k', rows, C, why);
  expectRows(v, 'v', rows, C, why);
  expectRows(out, 'out', rows, C, why);
  expectSize(lse, 'lse', batch * nHead * T, `([batch ${batch}, nHead ${nHead}, T ${T}])`);
  noAliases({ out, lse }, { q, k, v });
  sameBackend({ q, k, v, out, lse });
  return nativeAddon().attentionTrain({ batch, T, C, nHead, precision: code, q: q.native, k: k.native, v: v.native, out: out.native, lse: lse.native });
}

/**
 * The backward of attentionForwardTrain: dq, dk, dv [B·T, C] (=) from dout [B·T, C], given the
 * forward's q, k, v, out and lse. Probabilities are recomputed from q, k and lse (no T×T matrix),
 * with D_t = dout_t · out_t: dS_tj = P_tj (dout_t · v_j − D_t), dq_t = Σ_j dS_tj k_j / √hd,
 * dk_j = Σ_t dS_tj q_t / √hd, dv_j = Σ_t P_tj dout_t.
 */
export function attentionBackward(
  dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
  batch: number, T: number, nHead: number, dq: Tensor, dk: Tensor, dv: Tensor, precision: MatmulPrecision = 'f32',
): Promise<void> {
  return runAttentionBackward({ dout, q, k, v, out, lse }, batch, T, nHead, { dq, dk, dv }, precision);
}

// ---- q/k/v --------------------------------------------------------------------------------------

/**
 * attentionBackward into one [B·T, 3C] gradient dqkv (=): columns q | k | v, the gradient of the q/k/v
 * product that splitQkvTrain (or linearQkv) split (its backward): dq, dk and dv side by side in
 * each row, the same values attentionBackward writes.
 */
export function attentionBackwardQkv(
  dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
  batch: number, T: number, nHead: number, dqkv: Tensor, precision: MatmulPrecision = 'f32',
): Promise<void> {
  return runAttentionBackward({ dout, q, k, v, out, lse }, batch, T, nHead, { dqkv }, precision);
}

/** The attention backward's operands, as attentionBackward takes them. */
type AttentionBackwardInputs = { dout: Tensor; q: Tensor; k: Tensor; v: Tensor; out: Tensor; lse: Tensor };

/** attentionBackward's checks and call, into dq, dk, dv [B·T, C] each or one dqkv [B·T, 3C]. */
function runAttentionBackward(
  inputs: AttentionBackwardInputs, batch: number, T: number, nHead: number,
  grads: { dq: Tensor; dk: Tensor; dv: Tensor } | { dqkv: Tensor }, precision: MatmulPrecision,
): Promise<void> {
  const code = checkPrecision(precision);
  const { dout, q, k, v, out, lse } = inputs;
  const tensors = { ...inputs, ...grads };
  for (const [name, t] of Object.entries(tensors)) checkTensor(t, name);
  const { rows, C } = attentionDims(q, batch, T, nHead);
  const why = `like q ${formatShape(q.shape)}`;
  for (const [name, t] of Object.entries({ dout, k, v, out })) expectRows(t, name, rows, C, why);
  if ('dqkv' in grads) expectRows(grads.dqkv, 'dqkv', rows, 3 * C, `(q | k | v of q ${formatShape(q.shape)})`);
  else for (const [name, t] of Object.entries(grads)) expectRows(t, name, rows, C, why);
  expectSize(lse, 'lse', batch * nHead * T, `([batch ${batch}, nHead ${nHead}, T ${T}])`);
  noAliases(grads, inputs);
  sameBackend(tensors);
  const gradArgs = 'dqkv' in grads ? { dqkv: grads.dqkv.native } : { dq: grads.dq.native, dk: grads.dk.native, dv: grads.dv.native };
  return nativeAddon().attentionBackward({
    batch,
    T,
    C,
    nHead,
    precision: code,
    dout: dout.native,
    q: q.native,
    k: k.native,
    v: v.native,
    out: out.native,
    lse: lse.native,
    ...gradArgs,
  });
}

/** rows and C of a qkv [rows, 3C] operand. */
function qkvDims(qkv: Tensor, name: string): { rows: number; C: number } {
  const [rows, cols] = rowsOf(qkv, name);
  if (cols % 3 !== 0) throw new RangeError(`the last dim of ${name} ${formatShape(qkv.shape)} must be 3·C (q | k | v)`);
  return { rows, C: cols / 3 };
}

/** Splits qkv [B·T, 3C] (q | k | v along the last dim) into q, k, v [B·T, C]: lib/lm/ops.ts splitQkv without a cache. */
export function splitQkvTrain(qkv: Tensor, q: Tensor, k: Tensor, v: Tensor): Promise<void> {
  for (const [name, t] of Object.entries({ qkv, q, k, v })) checkTensor(t, name);
  const { rows, C } = qkvDims(qkv, 'qkv');
  const why = `(rows of qkv ${formatShape(qkv.shape)}, C ${C})`;
  expectRows(q, 'q', rows, C, why);
  expectRows(k, 'k', rows, C, why);
  expectRows(v, 'v', rows, C, why);
  noAliases({ q, k, v }, { qkv });
  sameBackend({ qkv, q, k, v });
  // k and v are caches [1, Tmax = rows, C] filled from offset 0.
  return nativeAddon().splitQkv({ batch: 1, T: rows, C, Tmax: rows, offset: 0, qkv: qkv.native, q: q.native, kCache: k.native, vCache: v.native });
}

// ---- layer norm, linear, activation -------------------------------------------------------------

/**
 * The backward of lib/lm/ops.ts layerNorm, from its saved mean and rstd [rows]: x, dout, dx
 * [rows, C]; weight, dweight, dbias [C]. With n = (x − mean)·rstd and g = dout·weight:
 * dx (=, or += when accumulate: the residual stream) = rstd·(g − mean(g) − n·mean(g·n));
 * dweight += Σ_rows dout·n; dbias += Σ_rows dout.
 */
export function layerNormBackward(
  dout: Tensor, x: Tensor, weight: Tensor, mean: Tensor, rstd: Tensor,
  dx: Tensor, dweight: Tensor, dbias: Tensor, accumulate: boolean,
): Promise<void> {
  const tensors = { dout, x, weight, mean, rstd, dx, dweight, dbias };
  for (const [name, t] of Object.entries(tensors)) checkTensor(t, name);
  checkBool(accumulate, 'accumulate');
  const [rows, C] = rowsOf(x, 'x');
  const xs = `to match x ${formatShape(x.shape)}`;
  expectRows(dout, 'dout', rows, C, xs);
  expectRows(dx, 'dx', rows, C, xs);
  expectShape(weight, 'weight', [C], xs);
  expectShape(dweight, 'dweight', [C], xs);
  expectShape(dbias, 'dbias', [C], xs);
  expectSize(mean, 'mean', rows, `(one per row of x ${formatShape(x.shape)})`);
  expectSize(rstd, 'rstd', rows, `(one per row of x ${formatShape(x.shape)})`);
  noAliases({ dx, dweight, dbias }, { dout, x, weight, mean, rstd });
  sameBackend(tensors);
  return nativeAddon().layerNormBackward({
    rows,
    C,
    dout: dout.native,
    x: x.native,
    weight: weight.native,
    mean: mean.native,
    rstd: rstd.native,
    dx: dx.native,
    dweight: dweight.native,
    dbias: dbias.native,
    accumulate,
  });
}

function runLinearBackward(
  dout: Tensor, x: Tensor, weight: Tensor, dx: Tensor | null, dweight: Tensor, dbias: Tensor | null,
  precision: MatmulPrecision, accumulate: boolean, transW: boolean,
): Promise<void> {
  // dout is f32, or a bf16 gradient (crossEntropyForwardBackward's options.gradient) at bf16 precision.
  checkTensor(dout, 'dout', f32OrBf16(dout));
  if (dout.dtype === 'bf16') {
    if (precision !== 'bf16') throw new TypeError(`a bf16 dout needs precision 'bf16' (got ${JSON.stringify(precision)})`);
    if (dbias !== null) throw new TypeError('dbias needs an f32 dout');
  }
  // x likewise: f32, or bf16 at bf16 precision (the dW product's operand as it is, e.g. a bf16 layer norm output).
  checkTensor(x, 'x', f32OrBf16(x));
  if (x.dtype === 'bf16' && precision !== 'bf16') throw new TypeError(`a bf16 x needs precision 'bf16' (got ${JSON.stringify(precision)})`);
  checkTensor(weight, 'weight');
  if (dx !== null) checkTensor(dx, 'dx');
  checkTensor(dweight, 'dweight');
  if (dbias !== null) checkTensor(dbias, 'dbias');
  const code = checkPrecision(precision);
  checkBool(accumulate, 'accumulate');
  const [rows, nIn] = rowsOf(x, 'x');
  const layout = transW ? '[out, in]' : '[in, out]';
  if (weight.shape.length !== 2 || weight.size < 1) throw new RangeError(`weight must have shape ${layout} (got ${formatShape(weight.shape)})`);
  const [w0, w1] = weight.shape as [number, number];
  const [wIn, nOut] = transW ? [w1, w0] : [w0, w1];
  if (wIn !== nIn) {
    throw new RangeError(`weight ${formatShape(weight.shape)} (${layout}) has ${wIn} inputs but x ${formatShape(x.shape)} has ${nIn} columns`);
  }
  if (nOut > MAX_DIM) throw new RangeError(`weight ${formatShape(weight.shape)} is too large`);
  const ws = `for x ${formatShape(x.shape)} and weight ${formatShape(weight.shape)} ${layout}`;
  expectRows(dout, 'dout', rows, nOut, ws);
  if (dx !== null) expectRows(dx, 'dx', rows, nIn, `like x ${formatShape(x.shape)}`);
  expectShape(dweight, 'dweight', weight.shape, `like weight ${formatShape(weight.shape)}`);
  if (dbias !== null) expectShape(dbias, 'dbias', [nOut], `to match weight ${formatShape(weight.shape)} ${layout}`);
  const outputs: Record<string, Tensor> = { dweight };
  if (dx !== null) outputs.dx = dx;
  if (dbias !== null) outputs.dbias = dbias;
  noAliases(outputs, { dout, x, weight });
  sameBackend({ dout, x, weight, ...outputs });
  return nativeAddon().linearBackward({
    rows,
    nIn,
    nOut,
    transW,
    precision: code,
    dout: dout.native,
    x: x.native,
    weight: weight.native,
    ...(dx !== null ? { dx: dx.native } : {}),
    dweight: dweight.native,
    ...(dbias !== null ? { dbias: dbias.native } : {}),
    accumulate,
  });
}

/**
 * The backward of out = x W + b (lib/lm/ops.ts linear; W [in, out]) from dout [rows, out]:
 * dx [rows, in] (=, or += when accumulate) = dout Wᵀ (dx null: not computed); dW += xᵀ dout;
 * db [out] += Σ_rows dout (db null: not computed). precision as linear: bf16 rounds dout, x and W
 * to bf16 with fp32 accumulation (the bias gradient always sums fp32 dout); at bf16, dout and x may
 * be bf16 tensors already, used as they are.
 */
export function linearBackward(
  dout: Tensor, x: Tensor, weight: Tensor, dx: Tensor | null, dweight: Tensor, dbias: Tensor | null,
  precision: MatmulPrecision, accumulate = false,
): Promise<void> {
  return runLinearBackward(dout, x, weight, dx, dweight, dbias, precision, accumulate, false);
}

/**
 * The backward of out = x Wᵀ (lib/lm/ops.ts linearT without bias; W [out, in], the tied
 * unembedding) from dout [rows, out]: dx (=, or += when accumulate) = dout W; dW += doutᵀ x.
 */
export function linearTBackward(
  dout: Tensor, x: Tensor, weight: Tensor, dx: Tensor | null, dweight: Tensor,
  precision: MatmulPrecision, accumulate = false,
): Promise<void> {
  return runLinearBackward(dout, x, weight, dx, dweight, null, precision, accumulate, true);
}

/**
 * The backward of out = x W + b (W [in, out]) where x = relu(pre) was kept in bf16, through the
 * ReLU, at bf16 precision (the products take bf16 operands, fp32 accumulation), from dout [rows,
 * out] (f32, or bf16 without dbias): dW += xᵀ dout; db [out] += Σ_rows dout (db null: not
 * computed); dpre (=, bf16 [rows, in]) = bf16(x > 0 ? dout Wᵀ : 0), the gradient of pre; dpreBias
 * [in] += Σ_rows of that gradient before rounding (the bias gradient of the layer that made pre;
 * null: not computed). The values of linearBackward into an f32 dx, activationBackward('relu', dx,
 * x, dx) and the rounding, up to the order of dpreBias's sums; a backend may form the gradient in
 * the product's epilogue, so that no f32 [rows, in] gradient reaches memory.
 */
export function reluLinearBackward(
  dout: Tensor, x: Tensor, weight: Tensor, dpre: Tensor, dweight: Tensor | null, dbias: Tensor | null,
  dpreBias: Tensor | null,
): Promise<void> {
  checkTensor(dout, 'dout', f32OrBf16(dout));
  if (dout.dtype === 'bf16' && dbias !== null) throw new TypeError('dbias needs an f32 dout');
  checkTensor(x, 'x', 'bf16');
  checkTensor(weight, 'weight');
  checkTensor(dpre, 'dpre', 'bf16');
  if (dweight !== null) checkTensor(dweight, 'dweight');
  if (dbias !== null) checkTensor(dbias, 'dbias');
  if (dpreBias !== null) checkTensor(dpreBias, 'dpreBias');
  const [rows, nIn] = rowsOf(x, 'x');
  if (weight.shape.length !== 2 || weight.shape[0] !== nIn) {
    throw new RangeError(`weight must have shape [${nIn}, out] ([in, out]) for x ${formatShape(x.shape)} (got ${formatShape(weight.shape)})`);
  }
  const nOut = weight.shape[1]!;
  if (nOut < 1 || nOut > MAX_DIM) throw new RangeError(`weight ${formatShape(weight.shape)} must have between 1 and 2^30 outputs`);
  const ws = `for x ${formatShape(x.shape)} and weight ${formatShape(weight.shape)} [in, out]`;
  expectRows(dout, 'dout', rows, nOut, ws);
  expectRows(dpre, 'dpre', rows, nIn, `like x ${formatShape(x.shape)}`);
  if (dweight !== null) expectShape(dweight, 'dweight', weight.shape, `like weight ${formatShape(weight.shape)}`);
  if (dbias !== null) expectShape(dbias, 'dbias', [nOut], `to match weight ${formatShape(weight.shape)} [in, out]`);
  if (dpreBias !== null) expectShape(dpreBias, 'dpreBias', [nIn], `to match weight ${formatShape(weight.shape)} [in, out]`);
  const outputs: Record<string, Tensor> = { dpre };
  if (dweight !== null) outputs.dweight = dweight;
  if (dbias !== null) outputs.dbias = dbias;
  if (dpreBias !== null) outputs.dpreBias = dpreBias;
  noAliases(outputs, { dout, x, weight });
  sameBackend({ dout, x, weight, ...outputs });
  return nativeAddon().reluLinearBackward({
    rows,
    nIn,
    nOut,
    transW: false,
    dout: dout.native,
    x: x.native,
    weight: weight.native,
    dpre: dpre.native,
    ...(dweight !== null ? { dweight: dweight.native } : {}),
    ...(dbias !== null ? { dbias: dbias.native } : {}),
    ...(dpreBias !== null ? { dpreBias: dpreBias.native } : {}),
  });
}

/**
 * dpre (=) = dpost · act'(pre) elementwise (same sizes), for the activations of lib/lm/ops.ts:
 * gelu_new, gelu and relu (derivative 1 where pre > 0, else 0). dpre may be dpost. pre may be a
 * bf16 tensor (read as its f32 values).
 */
export function activationBackward(kind: Activation, dpost: Tensor, pre: Tensor, dpre: Tensor): Promise<void> {
  const code = checkActivation(kind);
  checkTensor(dpost, 'dpost');
  checkTensor(pre, 'pre', f32OrBf16(pre)); // bf16: e.g. a ReLU's bf16 output (the sign of its input)
  checkTensor(dpre, 'dpre');
  if (pre.size < 1) throw new RangeError(`pre must not be empty (got ${formatShape(pre.shape)})`);
  expectSize(dpost, 'dpost', pre.size, `like pre ${formatShape(pre.shape)}`);
  expectSize(dpre, 'dpre', pre.size, `like pre ${formatShape(pre.shape)}`);
  noAliases({ dpre }, { pre });
  sameOrDistinct(dpre, 'dpre', dpost, 'dpost');
  sameBackend({ dpost, pre, dpre });
  return nativeAddon().activationBackward({ kind: code, count: pre.size, dpost: dpost.native, pre: pre.native, dpre: dpre.native });
}

// ---- loss and embeddings ------------------------------------------------------------------------

/**
 * Fused softmax cross-entropy, one pass per row: losses [rows] (=) = logsumexp(logits[r]) −
 * logits[r, targets[r]] (0 where targets[r] < 0), and IN PLACE in logits [rows, V] the gradient
 * (softmax(logits[r]) − onehot(targets[r])) · scale (rows with targets[r] < 0 become 0). targets:
 * i32 [rows]; scale: e.g. 1 / (number of counted rows) for a mean loss. A target >= V rejects
 * with MonosemanticError E_INVALID, nothing written (unless options.indicesChecked: IndexOptions).
 * options.gradient, a bf16 tensor of the logits' size: the gradient goes there (rounded to bf16)
 * instead, and the logits stay; linearBackward / linearTBackward take it as a bf16 dout at 'bf16'
 * precision (the rounding they would do themselves, without the fp32 gradient in between).
 * bf16 logits (a bf16 linear output) are computed with in fp32; their gradient, rounded to bf16,
 * replaces them in place, or goes to options.gradient.
 */
export function crossEntropyForwardBackward(
  logits: Tensor, targets: Tensor, losses: Tensor, scale: number, options?: IndexOptions & { gradient?: Tensor },
): Promise<void> {
  const indicesChecked = indicesCheckedOption(options);
  checkTensor(logits, 'logits', f32OrBf16(logits));
  checkTensor(targets, 'targets', 'i32');
  checkTensor(losses, 'losses');
  const gradient = options?.gradient;
  if (gradient !== undefined) {
    checkTensor(gradient, 'gradient', 'bf16');
    expectSize(gradient, 'gradient', logits.size, `like logits ${formatShape(logits.shape)}`);
    noAliases({ gradient, losses }, { logits, targets });
    sameBackend({ logits, gradient });
  }
  if (typeof scale !== 'number') throw new TypeError(`scale must be a number (got ${typeof scale})`);
  if (!Number.isFinite(scale)) throw new RangeError(`scale must be finite (got ${scale})`);
  const [rows, V] = rowsOf(logits, 'logits');
  const why = `(one per row of logits ${formatShape(logits.shape)})`;
  expectSize(targets, 'targets', rows, why);
  expectSize(losses, 'losses', rows, why);
  noAliases({ logits, losses }, {});
  sameBackend({ logits, targets, losses });
  return nativeAddon().crossEntropyBackward({
    rows, V, logits: logits.native, targets: targets.native, losses: losses.native, scale, indicesChecked,
    ...(gradient !== undefined ? { gradient: gradient.native } : {}),
  });
}

/** rows, V, C and the precision code of the fused unembedding cross-entropy's operands, checked. */
function unembedDims(x: Tensor, W: Tensor, targets: Tensor, lse: Tensor, precision: MatmulPrecision): { rows: number; V: number; C: number; code: number } {
  const code = checkPrecision(precision);
  checkTensor(x, 'x', f32OrBf16(x));
  checkTensor(W, 'W');
  checkTensor(targets, 'targets', 'i32');
  checkTensor(lse, 'lse');
  const [rows, C] = rowsOf(x, 'x');
  if (W.shape.length !== 2 || W.shape[1] !== C || W.shape[0]! < 1) {
    throw new RangeError(`W must have shape [V, ${C}] to match x ${formatShape(x.shape)} (got ${formatShape(W.shape)})`);
  }
  const V = W.shape[0]!;
  if (V > MAX_DIM) throw new RangeError(`W ${formatShape(W.shape)} is too large`);
  const why = `(one per row of x ${formatShape(x.shape)})`;
  expectSize(targets, 'targets', rows, why);
  expectSize(lse, 'lse', rows, why);
  return { rows, V, C, code };
}

/**
 * The unembedding product fused with the softmax cross-entropy, the logits x Wᵀ never formed in
 * memory: for x [rows, C] (f32, or bf16: its values as they are) and W [V, C] (the tied
 * unembedding, or lm_head), lse [rows] (=) = logsumexp_v (x Wᵀ)[r, v] for every row, and losses
 * [rows] (=) = lse[r] − (x Wᵀ)[r, targets[r]], 0 where targets[r] < 0 (targets: i32 [rows]). The
 * logits are linearT's product at `precision` (bf16: x and W rounded to bf16, fp32 accumulation),
 * taken in fp32 as they are (not rounded to bf16 first, as a bf16 linearT output would be). A target
 * >= V rejects with MonosemanticError E_INVALID, nothing written (unless options.indicesChecked:
 * IndexOptions). The CUDA backend fuses at bf16 precision with C 32, 64 or 128 only (E_UNSUPPORTED
 * otherwise); the CPU at any.
 */
export function unembedCrossEntropy(x: Tensor, W: Tensor, targets: Tensor, lse: Tensor, losses: Tensor, precision: MatmulPrecision, options?: IndexOptions): Promise<void> {
  const indicesChecked = indicesCheckedOption(options);
  const { rows, V, C, code } = unembedDims(x, W, targets, lse, precision);
  checkTensor(losses, 'losses');
  expectSize(losses, 'losses', rows, `(one per row of x ${formatShape(x.shape)})`);
  noAliases({ lse, losses }, { x, W, targets });
  sameBackend({ x, W, targets, lse, losses });
  return nativeAddon().unembedCrossEntropy({
    rows, V, C, precision: code, x: x.native, weight: W.native, targets: targets.native, lse: lse.native, losses: losses.native, indicesChecked,
  });
}

/**
 * The gradient of unembedCrossEntropy's losses with respect to the logits, from its lse (same x,
 * W, targets and precision): dlogits bf16 [rows, V] (=) = bf16((softmax(x Wᵀ)[r] − onehot(targets[r]))
 * · scale), rows with targets[r] < 0 zero; scale: e.g. 1 / (number of counted rows) for a mean loss.
 * The logits are formed again, a block of rows at a time. linearTBackward takes dlogits as a bf16
 * dout at 'bf16' precision. Errors as unembedCrossEntropy.
 */
export function unembedCrossEntropyBackward(
  x: Tensor, W: Tensor, targets: Tensor, lse: Tensor, scale: number, dlogits: Tensor, precision: MatmulPrecision, options?: IndexOptions,
): Promise<void> {
  const indicesChecked = indicesCheckedOption(options);
  const { rows, V, C, code } = unembedDims(x, W, targets, lse, precision);
  if (typeof scale !== 'number') throw new TypeError(`scale must be a number (got ${typeof scale})`);
  if (!Number.isFinite(scale)) throw new RangeError(`scale must be finite (got ${scale})`);
  checkTensor(dlogits, 'dlogits', 'bf16');
  expectRows(dlogits, 'dlogits', rows, V, `for x ${formatShape(x.shape)} and W ${formatShape(W.shape)}`);
  noAliases({ dlogits }, { x, W, targets, lse });
  sameBackend({ x, W, targets, lse, dlogits });
  return nativeAddon().unembedCrossEntropyBackward({
    rows, V, C, precision: code, x: x.native, weight: W.native, targets: targets.native, lse: lse.native, scale, dlogits: dlogits.native, indicesChecked,
  });
}

/**
 * The backward of lib/lm/ops.ts embed with posOffset 0: for row r = b·T + t,
 * dwte[ids[r]] += dtok[r] and dwpe[t] += dpos[r]. ids i32 [B·T]; dtok, dpos [B·T, C] (the same
 * tensor in GPT-2: the residual gradient); dwte [V, C]; dwpe [nPositions >= T, C]. An id outside
 * [0, V) rejects with MonosemanticError E_INVALID, nothing written (unless options.indicesChecked:
 * IndexOptions). The CPU sums in a fixed order (deterministic); CUDA uses atomic adds.
 */
export function embedBackward(ids: Tensor, batch: number, T: number, dtok: Tensor, dpos: Tensor, dwte: Tensor, dwpe: Tensor, options?: IndexOptions): Promise<void> {
  const indicesChecked = indicesCheckedOption(options);
  checkTensor(ids, 'ids', 'i32');
  checkInt(batch, 'batch', 1);
  checkInt(T, 'T', 1);
  checkTensor(dtok, 'dtok');
  checkTensor(dpos, 'dpos');
  checkTensor(dwte, 'dwte');
  checkTensor(dwpe, 'dwpe');
  const rows = batch * T;
  if (rows > MAX_DIM) throw new RangeError(`batch · T must be at most 2^30 (got ${batch} · ${T})`);
  expectSize(ids, 'ids', rows, `(batch ${batch} · T ${T})`);
  if (dwte.shape.length !== 2 || dwte.size < 1) throw new RangeError(`dwte must have shape [V, C] (got ${formatShape(dwte.shape)})`);
  const [V, C] = dwte.shape as [number, number];
  if (V > MAX_DIM || C > MAX_DIM) throw new RangeError(`dwte ${formatShape(dwte.shape)} is too large`);
  if (dwpe.shape.length !== 2 || dwpe.shape[1] !== C || dwpe.shape[0]! < 1) {
    throw new RangeError(`dwpe must have shape [nPositions, ${C}] to match dwte ${formatShape(dwte.shape)} (got ${formatShape(dwpe.shape)})`);
  }
  const nPositions = dwpe.shape[0]!;
  if (nPositions > MAX_DIM) throw new RangeError(`dwpe ${formatShape(dwpe.shape)} is too large`);
  if (T > nPositions) throw new RangeError(`T ${T} exceeds the ${nPositions} positions of dwpe ${formatShape(dwpe.shape)}`);
  const why = `(batch ${batch} · T ${T} rows of dwte ${formatShape(dwte.shape)})`;
  expectRows(dtok, 'dtok', rows, C, why);
  expectRows(dpos, 'dpos', rows, C, why);
  noAliases({ dwte, dwpe }, { ids, dtok, dpos });
  sameBackend({ ids, dtok, dpos, dwte, dwpe });
  return nativeAddon().embedBackward({
    batch,
    T,
    C,
    vocab: V,
    nPositions,
    ids: ids.native,
    dtok: dtok.native,
    dpos: dpos.native,
    dwte: dwte.native,
    dwpe: dwpe.native,
    indicesChecked,
  });
}

// ---- optimiser ----------------------------------------------------------------------------------

export interface AdamWHyperparams {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Step number t, from 1 (bias corrections 1 − βᵗ). */
  step: number;
  /** Multiplies the gradient first (< 1 when its norm is clipped); default 1. */
  gradScale?: number;
  /**
   * Clipping on the backend, with no read-back: `sumSquares` (a one-element f32 tensor holding the
   * squared global gradient norm s, as reduceSumInto leaves it) scales the gradient further by
   * maxNorm / √s when maxNorm > 0 and √s > maxNorm.
   */
  clip?: { sumSquares: Tensor; maxNorm: number };
}

function hpNumber(hp: Record<string, unknown>, key: string, ok: (v: number) => boolean, range: string): number {
  const v = hp[key];
  if (typeof v !== 'number') throw new TypeError(`hp.${key} must be a number (got ${typeof v})`);
  if (!Number.isFinite(v) || !ok(v)) throw new RangeError(`hp.${key} must be ${range} (got ${v})`);
  return v;
}

/**
 * One AdamW step (PyTorch semantics, decoupled weight decay) on param with its gradient grad and
 * moments m, v (all the same size; m, v start at 0): p ← p·(1 − lr·weightDecay); then, as
 * native/backend.h adam_update with g = gradScale·grad: m ← β1·m + (1 − β1)·g;
 * v ← β2·v + (1 − β2)·g²; p ← p − lr·(m / (1 − β1ᵗ)) / (√(v / (1 − β2ᵗ)) + eps).
 */
export function adamW(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, hp: AdamWHyperparams): Promise<void> {
  for (const [name, t] of Object.entries({ param, grad, m, v })) checkTensor(t, name);
  if (param.size < 1) throw new RangeError(`param must not be empty (got ${formatShape(param.shape)})`);
  const like = `like param ${formatShape(param.shape)}`;
  expectSize(grad, 'grad', param.size, like);
  expectSize(m, 'm', param.size, like);
  expectSize(v, 'v', param.size, like);
  noAliases({ param, m, v }, { grad });
  sameBackend({ param, grad, m, v });
  if (hp === null || typeof hp !== 'object') throw new TypeError('hp must be an object { lr, beta1, beta2, eps, weightDecay, step, gradScale? }');
  const h = hp as unknown as Record<string, unknown>;
  const lr = hpNumber(h, 'lr', (x) => x >= 0, 'a finite number >= 0');
  const beta1 = hpNumber(h, 'beta1', (x) => x >= 0 && x < 1, 'in [0, 1)');
  const beta2 = hpNumber(h, 'beta2', (x) => x >= 0 && x < 1, 'in [0, 1)');
  const eps = hpNumber(h, 'eps', (x) => x >= 0, 'a finite number >= 0');
  const weightDecay = hpNumber(h, 'weightDecay', (x) => x >= 0, 'a finite number >= 0');
  const step = hpNumber(h, 'step', (x) => Number.isInteger(x) && x >= 1 && x <= 2 ** 31 - 1, 'an integer in [1, 2^31 - 1]');
  const gradScale = h.gradScale === undefined ? 1 : hpNumber(h, 'gradScale', (x) => x >= 0, 'a finite number >= 0');
  const clip = hp.clip;
  if (clip === null) throw new TypeError('clip must be an object { sumSquares, maxNorm } or left out');
  if (clip !== undefined) {
    checkTensor(clip.sumSquares, 'clip.sumSquares');
    if (clip.sumSquares.size !== 1 || clip.sumSquares.dtype !== 'f32') throw new RangeError(`clip.sumSquares must be one f32 value (got ${clip.sumSquares.dtype} ${formatShape(clip.sumSquares.shape)})`);
    if (clip.sumSquares.backend !== param.backend) throw new TypeError(`clip.sumSquares is on ${clip.sumSquares.backend} but param is on ${param.backend}`);
    noAliases({ param, m, v }, { 'clip.sumSquares': clip.sumSquares });
    if (typeof clip.maxNorm !== 'number' || !Number.isFinite(clip.maxNorm) || clip.maxNorm < 0) throw new RangeError(`clip.maxNorm must be a finite number >= 0 (got ${clip.maxNorm})`);
  }
  return nativeAddon().adamW({
    count: param.size,
    param: param.native,
    grad: grad.native,
    m: m.native,
    v: v.native,
    lr,
    beta1,
    beta2,
    eps,
    weightDecay,
    t: step,
    gradScale,
    ...(clip ? { clipSumSquares: clip.sumSquares.native, clipNorm: clip.maxNorm } : {}),
  });
}
