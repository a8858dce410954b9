/**
 * The native ops of a GPT-2 forward pass (llm.c's layout): layer norm, linear layers, activations,
 * residual adds, token + position embeddings, the q/k/v split into a key/value cache, causal
 * attention over the cache, per-row cross-entropy and argmax. Each runs on the operands' backend
 * (CPU or CUDA), off the JavaScript thread, and resolves when its outputs are written; operations
 * on one backend run in call order.
 *
 * Tensors are whole tensors (no strided views), f32 unless noted, all on one backend. A "[rows, C]"
 * operand may have any shape whose last dim is C and whose size is rows·C ([B, T, C] is fine).
 * Argument problems throw TypeError / RangeError synchronously, naming the argument and the
 * shapes; failures inside a backend (an out-of-range token id or target, out of memory, a CUDA
 * error) reject with a MonosemanticError (`code` E_INVALID, E_OOM, E_DEVICE, ...).
 */
import { nativeAddon } from '../backend.js';
import { type IndexOptions, indicesCheckedOption } from '../ops.js';
import { type Tensor, formatShape } from '../tensor.js';
import { MAX_DIM, checkActivation, checkInt, checkPrecision, checkTensor, distinct, expectRows, expectShape, expectSize, f32OrBf16, noAliases, rowsOf, sameBackend, sameOrDistinct } from './op-checks.js';

/** bf16: operands rounded to bf16, fp32 accumulation (as the SAE ops). */
export type MatmulPrecision = 'f32' | 'bf16';
/** gelu_new: 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))) (GPT-2); gelu: 0.5x(1 + erf(x/√2)); relu. */
export type Activation = 'gelu_new' | 'gelu' | 'relu';

// ---- ops ----------------------------------------------------------------------------------------

/**
 * out[r] = (x[r] − mean) · rstd · weight + bias over the last dim C, rstd = 1/√(var + eps) with the
 * biased variance (as torch). x [rows, C]; weight, bias [C]; out [rows, C] (out may be x), f32 or
 * bf16 (rounded: e.g. the operand of a bf16 linear layer). saved.mean / saved.rstd [rows]:
 * optional outputs, kept for a backward pass.
 */
export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps: number, out: Tensor, saved?: { mean: Tensor; rstd: Tensor }): Promise<void> {
  checkTensor(x, 'x');
  checkTensor(weight, 'weight');
  checkTensor(bias, 'bias');
  checkTensor(out, 'out', f32OrBf16(out));
  if (typeof eps !== 'number') throw new TypeError(`eps must be a number (got ${typeof eps})`);
  if (!Number.isFinite(eps) || eps < 0) throw new RangeError(`eps must be a finite number >= 0 (got ${eps})`);
  const [rows, C] = rowsOf(x, 'x');
  const xs = `to match x ${formatShape(x.shape)}`;
  expectShape(weight, 'weight', [C], xs);
  expectShape(bias, 'bias', [C], xs);
  expectRows(out, 'out', rows, C, xs);
  noAliases({ out }, { weight, bias });
  sameOrDistinct(out, 'out', x, 'x'); // out may be x itself
  const operands: Record<string, Tensor> = { x, weight, bias, out };
  if (saved !== undefined) {
    if (saved === null || typeof saved !== 'object') throw new TypeError('saved must be an object { mean, rstd }');
    checkTensor(saved.mean, 'saved.mean');
    checkTensor(saved.rstd, 'saved.rstd');
    expectSize(saved.mean, 'saved.mean', rows, `(one per row of x ${formatShape(x.shape)})`);
    expectSize(saved.rstd, 'saved.rstd', rows, `(one per row of x ${formatShape(x.shape)})`);
    noAliases({ 'saved.mean': saved.mean, 'saved.rstd': saved.rstd }, { x, weight, bias, out });
    operands['saved.mean'] = saved.mean;
    operands['saved.rstd'] = saved.rstd;
  }
  sameBackend(operands);
  return nativeAddon().layerNorm({
    rows,
    C,
    eps,
    x: x.native,
    weight: weight.native,
    bias: bias.native,
    out: out.native,
    ...(saved ? { mean: saved.mean.native, rstd: saved.rstd.native } : {}),
  });
}

/** Options of linear and linearT. */
export interface LinearOptions {
  /**
   * Applied to the result, as activation() would. CUDA at bf16 applies a ReLU or gelu_new with the
   * bias in the product's epilogue, by activation()'s own arithmetic; such a product never splits
   * its sums along K, so where the unfused one would, the two may differ in their last bits.
   */
  activation?: Activation;
  /**
   * Adds the result (bias included) to out's values instead of overwriting them: out = out + (x W + b),
   * the same fp32 addition as add(out, branch, out) after a linear into `branch` (a residual stream
   * taking a branch without writing it). out must be f32; no activation.
   */
  accumulate?: boolean;
}

function runLinear(x: Tensor, weight: Tensor, bias: Tensor | null, out: Tensor, precision: MatmulPrecision, transW: boolean, options?: LinearOptions): Promise<void> {
  const act = options?.activation === undefined ? undefined : checkActivation(options.activation, 'activation');
  const accumulate = options?.accumulate ?? false;
  if (typeof accumulate !== 'boolean') throw new TypeError(`accumulate must be a boolean (got ${String(accumulate)})`);
  if (accumulate && act !== undefined) throw new RangeError('accumulate takes no activation: out = out + (x W + b)');
  const code = checkPrecision(precision);
  // At bf16 precision x may be bf16 (the operand as it is) and out too (the result rounded): the
  // product rounds its operands to bf16 anyway.
  checkTensor(x, 'x', precision === 'bf16' ? f32OrBf16(x) : 'f32');
  checkTensor(weight, 'weight');
  if (bias !== null) checkTensor(bias, 'bias');
  checkTensor(out, 'out', precision === 'bf16' && !accumulate ? f32OrBf16(out) : 'f32');
  const [rows, nIn] = rowsOf(x, 'x');
  const layout = transW ? '[out, in]' : '[in, out]';
  if (weight.shape.length !== 2 || weight.size < 1) throw new RangeError(`weight must have shape ${layout} (got ${formatShape(weight.shape)})`);
  const [w0, w1] = weight.shape as [number, number];
  const [wIn, nOut] = transW ? [w1, w0] : [w0, w1];
  if (wIn !== nIn) {
    throw new RangeError(`weight ${formatShape(weight.shape)} (${layout}) has ${wIn} inputs but x ${formatShape(x.shape)} has ${nIn} columns`);
  }
  if (nOut > MAX_DIM) throw new RangeError(`weight ${formatShape(weight.shape)} is too large`);
  if (bias !== null) expectShape(bias, 'bias', [nOut], `to match weight ${formatShape(weight.shape)} ${layout}`);
  expectRows(out, 'out', rows, nOut, `for x ${formatShape(x.shape)} and weight ${formatShape(weight.shape)} ${layout}`);
  distinct(out, 'out', x, 'x');
  distinct(out, 'out', weight, 'weight');
  if (bias !== null) distinct(out, 'out', bias, 'bias');
  sameBackend(bias === null ? { x, weight, out } : { x, weight, bias, out });
  return nativeAddon().linear({
    rows,
    nIn,
    nOut,
    transW,
    precision: code,
    x: x.native,
    weight: weight.native,
    ...(bias !== null ? { bias: bias.native } : {}),
    out: out.native,
    ...(act !== undefined ? { activation: act } : {}),
    ...(accumulate ? { accumulate: true } : {}),
  });
}

/**
 * out = x W + b: x [rows, in], W [in, out] (HF GPT-2 Conv1D layout), b [out] or null, out [rows, out];
 * out = act(x W + b) with options.activation. At 'bf16' precision x may be a bf16 tensor (the
 * operand as it is: the product rounds an f32 x to bf16), and out too: the fp32 result (bias and
 * activation included) rounded to nearest even.
 */
export function linear(x: Tensor, weight: Tensor, bias: Tensor | null, out: Tensor, precision: MatmulPrecision, options?: LinearOptions): Promise<void> {
  return runLinear(x, weight, bias, out, precision, false, options);
}

/** out = x Wᵀ + b: W [out, in] (nn.Linear layout; also the tied unembedding with W = wte [V, C]). */
export function linearT(x: Tensor, weight: Tensor, bias: Tensor | null, out: Tensor, precision: MatmulPrecision, options?: LinearOptions): Promise<void> {
  return runLinear(x, weight, bias, out, precision, true, options);
}

/** Elementwise out = act(x) (same sizes); out may be x. relu maps NaN to 0. */
export function activation(kind: Activation, x: Tensor, out: Tensor): Promise<void> {
  const code = checkActivation(kind);
  checkTensor(x, 'x');
  checkTensor(out, 'out');
  if (x.size < 1) throw new RangeError(`x must not be empty (got ${formatShape(x.shape)})`);
  expectSize(out, 'out', x.size, `like x ${formatShape(x.shape)}`);
  sameBackend({ x, out });
  sameOrDistinct(out, 'out', x, 'x');
  return nativeAddon().activation({ kind: code, count: x.size, x: x.native, out: out.native });
}

/** Elementwise out = a + b (same sizes); out may alias a or b. */
export function add(a: Tensor, b: Tensor, out: Tensor): Promise<void> {
  checkTensor(a, 'a');
  checkTensor(b, 'b');
  checkTensor(out, 'out');
  if (a.size < 1) throw new RangeError(`a must not be empty (got ${formatShape(a.shape)})`);
  expectSize(b, 'b', a.size, `like a ${formatShape(a.shape)}`);
  expectSize(out, 'out', a.size, `like a ${formatShape(a.shape)}`);
  sameBackend({ a, b, out });
  sameOrDistinct(out, 'out', a, 'a');
  sameOrDistinct(out, 'out', b, 'b');
  return nativeAddon().add({ count: a.size, a: a.native, b: b.native, out: out.native });
}

/**
 * Token and position embeddings. ids: i32 [B·T] (row-major [B, T]); wte [V, C]; wpe [nPositions, C];
 * tokOut[b·T + t] = wte[ids[b·T + t]], posOut[b·T + t] = wpe[posOffset + t] (both [B·T, C]);
 * with posOut null, tokOut receives their sum (the residual stream's start, the additions of add()).
 * posOffset + T > nPositions is a RangeError; an id outside [0, V) is found on the device and
 * rejects with MonosemanticError E_INVALID naming the first bad index (nothing is written then),
 * unless options.indicesChecked (IndexOptions: the caller checked the ids on the host).
 */
export function embed(ids: Tensor, batch: number, T: number, wte: Tensor, wpe: Tensor, posOffset: number, tokOut: Tensor, posOut: Tensor | null, options?: IndexOptions): Promise<void> {
  const indicesChecked = indicesCheckedOption(options);
  checkTensor(ids, 'ids', 'i32');
  checkInt(batch, 'batch', 1);
  checkInt(T, 'T', 1);
  checkTensor(wte, 'wte');
  checkTensor(wpe, 'wpe');
  checkInt(posOffset, 'posOffset', 0);
  checkTensor(tokOut, 'tokOut');
  if (posOut !== null) checkTensor(posOut, 'posOut');
  const rows = batch * T;
  if (rows > MAX_DIM) throw new RangeError(`batch · T must be at most 2^30 (got ${batch} · ${T})`);
  expectSize(ids, 'ids', rows, `(batch ${batch} · T ${T})`);
  if (wte.shape.length !== 2 || wte.size < 1) throw new RangeError(`wte must have shape [V, C] (got ${formatShape(wte.shape)})`);
  const [V, C] = wte.shape as [number, number];
  if (V > MAX_DIM || C > MAX_DIM) throw new RangeError(`wte ${formatShape(wte.shape)} is too large`);
  if (wpe.shape.length !== 2 || wpe.shape[1] !== C || wpe.shape[0]! < 1) {
    throw new RangeError(`wpe must have shape [nPositions, ${C}] to match wte ${formatShape(wte.shape)} (got ${formatShape(wpe.shape)})`);
  }
  const nPositions = wpe.shape[0]!;
  if (nPositions > MAX_DIM) throw new RangeError(`wpe ${formatShape(wpe.shape)} is too large`);
  if (posOffset + T > nPositions) {
    throw new RangeError(`posOffset ${posOffset} + T ${T} exceeds the ${nPositions} positions of wpe ${formatShape(wpe.shape)}`);
  }
  const why = `(batch ${batch} · T ${T} rows of wte ${formatShape(wte.shape)})`;
  expectRows(tokOut, 'tokOut', rows, C, why);
  if (posOut !== null) expectRows(posOut, 'posOut', rows, C, why);
  noAliases(posOut !== null ? { tokOut, posOut } : { tokOut }, { ids, wte, wpe });
  sameBackend(posOut !== null ? { ids, wte, wpe, tokOut, posOut } : { ids, wte, wpe, tokOut });
  return nativeAddon().embed({
    batch,
    T,
    C,
    vocab: V,
    nPositions,
    posOffset,
    ids: ids.native,
    wte: wte.native,
    wpe: wpe.native,
    tokOut: tokOut.native,
    ...(posOut !== null ? { posOut: posOut.native } : {}),
    indicesChecked,
  });
}

/** offset + T <= Tmax, else a RangeError. */
function checkCacheWindow(T: number, Tmax: number, offset: number): void {
  if (offset + T > Tmax) throw new RangeError(`offset ${offset} + T ${T} exceeds Tmax ${Tmax} (the cache length)`);
}

/**
 * splitQkv's and linearQkv's sizes and destination tensors, checked in that order: batch, T, C,
 * q, kCache, vCache, Tmax, offset, the cache window and the 2^30 bounds. Returns the rows, batch · T.
 */
function checkQkvSizes(batch: number, T: number, C: number, q: Tensor, kCache: Tensor, vCache: Tensor, Tmax: number, offset: number): number {
  checkInt(batch, 'batch', 1);
  checkInt(T, 'T', 1);
  checkInt(C, 'C', 1);
  checkTensor(q, 'q');
  checkTensor(kCache, 'kCache');
  checkTensor(vCache, 'vCache');
  checkInt(Tmax, 'Tmax', 1);
  checkInt(offset, 'offset', 0);
  checkCacheWindow(T, Tmax, offset);
  const rows = batch * T;
  if (rows > MAX_DIM || 3 * C > MAX_DIM) throw new RangeError(`batch · T and 3 · C must be at most 2^30 (got ${batch} · ${T}, 3 · ${C})`);
  return rows;
}

/** The shapes of a q/k/v split's destinations: q [batch·T, C], kCache and vCache [batch, Tmax, C]. */
function expectQkvDestinations(batch: number, T: number, C: number, q: Tensor, kCache: Tensor, vCache: Tensor, Tmax: number): void {
  expectRows(q, 'q', batch * T, C, `(batch ${batch} · T ${T} rows, C ${C})`);
  const cacheWhy = `([batch ${batch}, Tmax ${Tmax}, C ${C}])`;
  expectRows(kCache, 'kCache', batch * Tmax, C, cacheWhy);
  expectRows(vCache, 'vCache', batch * Tmax, C, cacheWhy);
}

/**
 * Splits the c_attn output qkv [B·T, 3C] (q | k | v along the last dim): q [B·T, C] gets the
 * queries; the key and value rows go into kCache, vCache [B, Tmax, C] at positions
 * offset .. offset+T−1 (offset + T <= Tmax; other cache rows untouched).
 */
export function splitQkv(qkv: Tensor, batch: number, T: number, C: number, q: Tensor, kCache: Tensor, vCache: Tensor, Tmax: number, offset: number): Promise<void> {
  checkTensor(qkv, 'qkv');
  const rows = checkQkvSizes(batch, T, C, q, kCache, vCache, Tmax, offset);
  expectRows(qkv, 'qkv', rows, 3 * C, `(batch ${batch} · T ${T} rows of q | k | v, C ${C})`);
  expectQkvDestinations(batch, T, C, q, kCache, vCache, Tmax);
  noAliases({ q, kCache, vCache }, { qkv });
  sameBackend({ qkv, q, kCache, vCache });
  return nativeAddon().splitQkv({ batch, T, C, Tmax, offset, qkv: qkv.native, q: q.native, kCache: kCache.native, vCache: vCache.native });
}

/**
 * The attention's input product and its split in one call: qkv = x W + b as linear() computes it
 * (x [batch·T, C], f32 or at 'bf16' also bf16; W [C, 3C] in HF's Conv1D layout; b [3C] or null),
 * split as splitQkv() splits it into q [batch·T, C] and the caches [batch, Tmax, C] at offset. The
 * same values as linear() into a [batch·T, 3C] temporary then splitQkv(); CUDA at bf16 stores each
 * column of the product where it goes, without the temporary, where its kernel allows.
 */
export function linearQkv(x: Tensor, weight: Tensor, bias: Tensor | null, batch: number, T: number, C: number, q: Tensor, kCache: Tensor, vCache: Tensor, Tmax: number, offset: number, precision: MatmulPrecision): Promise<void> {
  const code = checkPrecision(precision);
  checkTensor(x, 'x', precision === 'bf16' ? f32OrBf16(x) : 'f32');
  checkTensor(weight, 'weight');
  if (bias !== null) checkTensor(bias, 'bias');
  const rows = checkQkvSizes(batch, T, C, q, kCache, vCache, Tmax, offset);
  expectRows(x, 'x', rows, C, `(batch ${batch} · T ${T} rows, C ${C})`);
  expectShape(weight, 'weight', [C, 3 * C], `(C ${C} inputs, q | k | v outputs)`);
  if (bias !== null) expectShape(bias, 'bias', [3 * C], `(q | k | v, C ${C})`);
  expectQkvDestinations(batch, T, C, q, kCache, vCache, Tmax);
  noAliases({ q, kCache, vCache }, bias === null ? { x, weight } : { x, weight, bias });
  sameBackend(bias === null ? { x, weight, q, kCache, vCache } : { x, weight, bias, q, kCache, vCache });
  return nativeAddon().linearQkv({
    batch,
    T,
    C,
    Tmax,
    offset,
    precision: code,
    x: x.native,
    weight: weight.native,
    ...(bias !== null ? { bias: bias.native } : {}),
    q: q.native,
    kCache: kCache.native,
    vCache: vCache.native,
  });
}

/**
 * Causal multi-head attention of T new queries per sequence at positions offset .. offset+T−1
 * over the cached keys/values 0 .. offset+T−1: for head h (hd = C / nHead, columns h·hd ..
 * (h+1)·hd − 1), the query at position p attends to keys j <= p with softmax(q·k / √hd) v.
 * q [B·T, C]; caches [B, Tmax, C]; out [B·T, C] = the heads' outputs side by side. Online softmax
 * (no T×T matrix); fp32 accumulation (the CPU uses double). precision 'bf16' lets CUDA run the
 * products q·k and softmax·v on tensor cores with bf16 operands where it can (whole sequences,
 * head size 32 or 64); the CPU computes in fp32 at either precision. At 'bf16' out may be a bf16
 * tensor: the result rounded to nearest even (the operand a following bf16 product takes).
 */
export function attention(
  q: Tensor, kCache: Tensor, vCache: Tensor, batch: number, T: number, Tmax: number, offset: number, nHead: number, out: Tensor,
  precision: MatmulPrecision = 'f32',
): Promise<void> {
  const code = checkPrecision(precision);
  checkTensor(q, 'q');
  checkTensor(kCache, 'kCache');
  checkTensor(vCache, 'vCache');
  checkInt(batch, 'batch', 1);
  checkInt(T, 'T', 1);
  checkInt(Tmax, 'Tmax', 1);
  checkInt(offset, 'offset', 0);
  checkInt(nHead, 'nHead', 1);
  checkTensor(out, 'out', precision === 'bf16' ? f32OrBf16(out) : 'f32');
  checkCacheWindow(T, Tmax, offset);
  const rows = batch * T;
  if (rows > MAX_DIM) throw new RangeError(`batch · T must be at most 2^30 (got ${batch} · ${T})`);
  const [, C] = rowsOf(q, 'q');
  expectRows(q, 'q', rows, C, `(batch ${batch} · T ${T} rows)`);
  if (C % nHead !== 0) throw new RangeError(`nHead ${nHead} must divide C ${C} (the last dim of q ${formatShape(q.shape)})`);
  const cacheWhy = `([batch ${batch}, Tmax ${Tmax}, C ${C}])`;
  expectRows(kCache, 'kCache', batch * Tmax, C, cacheWhy);
  expectRows(vCache, 'vCache', batch * Tmax, C, cacheWhy);
  expectRows(out, 'out', rows, C, `like q ${formatShape(q.shape)}`);
  distinct(out, 'out', q, 'q');
  distinct(out, 'out', kCache, 'kCache');
  distinct(out, 'out', vCache, 'vCache');
  sameBackend({ q, kCache, vCache, out });
  return nativeAddon().attention({ batch, T, Tmax, offset, C, nHead, precision: code, q: q.native, kCache: kCache.native, vCache: vCache.native, out: out.native });
}

/**
 * Per-row cross-entropy out[r] = logsumexp(logits[r]) − logits[r, targets[r]]: logits [rows, V]
 * (f32, or bf16: computed with in fp32), targets i32 [rows] (a target < 0 gives out[r] = 0: an
 * ignored position), out [rows]. No probabilities are materialised. A target >= V rejects with
 * MonosemanticError E_INVALID (unless options.indicesChecked: IndexOptions).
 */
export function crossEntropy(logits: Tensor, targets: Tensor, out: Tensor, options?: IndexOptions): Promise<void> {
  const indicesChecked = indicesCheckedOption(options);
  checkTensor(logits, 'logits', f32OrBf16(logits));
  checkTensor(targets, 'targets', 'i32');
  checkTensor(out, 'out');
  const [rows, V] = rowsOf(logits, 'logits');
  const why = `(one per row of logits ${formatShape(logits.shape)})`;
  expectSize(targets, 'targets', rows, why);
  expectSize(out, 'out', rows, why);
  sameBackend({ logits, targets, out });
  noAliases({ out }, { logits, targets });
  return nativeAddon().crossEntropy({ rows, V, logits: logits.native, targets: targets.native, out: out.native, indicesChecked });
}

/**
 * Per-row KL divergence out[r] = KL(softmax(p[r]) ‖ softmax(q[r])) = Σ_v P_v (log P_v − log Q_v) of
 * two logit matrices p, q [rows, V] (e.g. a clean and an intervened model's next-token logits),
 * without materialising probabilities. out [rows].
 */
export function klRows(p: Tensor, q: Tensor, out: Tensor): Promise<void> {
  checkTensor(p, 'p');
  checkTensor(q, 'q');
  checkTensor(out, 'out');
  const [rows, V] = rowsOf(p, 'p');
  expectRows(q, 'q', rows, V, `like p ${formatShape(p.shape)}`);
  expectSize(out, 'out', rows, `(one per row of p ${formatShape(p.shape)})`);
  sameBackend({ p, q, out });
  noAliases({ out }, { p, q });
  return nativeAddon().klRows({ rows, V, p: p.native, q: q.native, out: out.native });
}

/** out[r] = argmax_v logits[r, v] (the first on ties; NaN counts as largest, as torch): logits [rows, V], out i32 [rows]. */
export function argmaxRows(logits: Tensor, out: Tensor): Promise<void> {
  checkTensor(logits, 'logits');
  checkTensor(out, 'out', 'i32');
  const [rows, V] = rowsOf(logits, 'logits');
  expectSize(out, 'out', rows, `(one per row of logits ${formatShape(logits.shape)})`);
  sameBackend({ logits, out });
  return nativeAddon().argmaxRows({ rows, V, logits: logits.native, out: out.native });
}
