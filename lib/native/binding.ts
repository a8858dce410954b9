/** The native addon's surface, as the TypeScript layer sees it (native/core/*.cpp). */

/** dtype codes shared with native/backend.h (ms_dtype). */
export const DTYPE_CODE = { f32: 0, bf16: 1, i32: 2 } as const;

export interface NativeTensor {
  upload(src: Float32Array | Uint16Array | Int32Array, elementOffset?: number): void;
  download(dst: Float32Array | Uint16Array | Int32Array, elementOffset?: number): void;
  fill(value: number): void;
  copyFrom(src: NativeTensor): void;
  /** Whether the two share any byte of memory (one tensor, or views of one buffer whose ranges meet). */
  overlaps(other: NativeTensor): boolean;
  dispose(): void;
  readonly disposed: boolean;
  readonly byteLength: number;
}

export interface NativeTensorConstructor {
  new (backend: string, dtype: number, numel: number): NativeTensor;
  /** A view of elements [elementOffset, elementOffset + numel) of base (native/core/tensor.h). */
  new (base: NativeTensor, elementOffset: number, numel: number): NativeTensor;
}

export interface NativeStats {
  loss: number;
  mse: number;
  sparsity: number;
  l0: number;
}

export interface NativeDims {
  batch: number;
  d: number;
  n: number;
  precision: number;
}

export interface NativeGradsArgs extends NativeDims {
  penalty: number;
  l1Coeff: number;
  x: NativeTensor;
  W_enc: NativeTensor;
  b_enc: NativeTensor;
  W_dec: NativeTensor;
  b_dec: NativeTensor;
  dW_enc: NativeTensor;
  db_enc: NativeTensor;
  dW_dec: NativeTensor;
  db_dec: NativeTensor;
  fireCounts?: NativeTensor;
  /** false: the statistics are not read back (nothing waits for the device); the result is undefined. */
  readStats?: boolean;
  workspace: NativeTensor;
}

export interface NativeStepArgs extends NativeGradsArgs {
  constrainDecoder: boolean;
  /** Max global L2 norm of the gradients; 0 or absent: no clipping. */
  clipGradNorm?: number;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  t: number;
  m_W_enc: NativeTensor;
  v_W_enc: NativeTensor;
  m_b_enc: NativeTensor;
  v_b_enc: NativeTensor;
  m_W_dec: NativeTensor;
  v_W_dec: NativeTensor;
  m_b_dec: NativeTensor;
  v_b_dec: NativeTensor;
}

export interface NativeStepStats extends NativeStats {
  /** Global L2 norm of the gradients before clipping; NaN when not clipping. */
  gradNorm: number;
}

export interface NativeResampleCandidatesArgs {
  k: number;
  batch: number;
  d: number;
  seed: number;
  offset: number;
  x: NativeTensor;
  loss: NativeTensor;
  candKeys: NativeTensor;
  candRows: NativeTensor;
}

export interface NativeSaeResampleArgs {
  d: number;
  n: number;
  count: number;
  dead: NativeTensor;
  candKeys: NativeTensor;
  candRows: NativeTensor;
  encNormFactor: number;
  W_enc: NativeTensor;
  b_enc: NativeTensor;
  W_dec: NativeTensor;
  m_W_enc: NativeTensor;
  v_W_enc: NativeTensor;
  m_b_enc: NativeTensor;
  v_b_enc: NativeTensor;
  m_W_dec: NativeTensor;
  v_W_dec: NativeTensor;
}

export interface NativeDeviceInfo {
  name: string;
  totalBytes: number;
  freeBytes: number;
  multiprocessors: number;
  computeCapability: string;
}

export interface NativeBackendInfo {
  /** hopperGemm: the device runs the Hopper GEMM (wgmma + TMA; which products use it: MONOSEMANTIC_CUDA_GEMM). */
  runtime: { driverVersion: number; runtimeVersion: number; deviceCount: number; hopperGemm: boolean };
  devices: NativeDeviceInfo[];
  /** Operations only queue work and settle at once (CUDA, unless MONOSEMANTIC_CUDA_ASYNC=0). */
  asyncOps: boolean;
}

/** ms_activation codes (native/backend.h). */
export const ACTIVATION_CODE = { gelu_new: 0, gelu: 1, relu: 2 } as const;

export interface NativeLayerNormArgs {
  rows: number;
  C: number;
  eps: number;
  x: NativeTensor;
  weight: NativeTensor;
  bias: NativeTensor;
  out: NativeTensor;
  /** [rows] outputs, both or neither. */
  mean?: NativeTensor;
  rstd?: NativeTensor;
}

export interface NativeLinearArgs {
  rows: number;
  nIn: number;
  nOut: number;
  /** false: weight [nIn, nOut]; true: weight [nOut, nIn], used transposed. */
  transW: boolean;
  precision: number;
  x: NativeTensor;
  weight: NativeTensor;
  bias?: NativeTensor;
  out: NativeTensor;
  /** An activation code (ACTIVATION_CODE) applied to the result; absent: none. */
  activation?: number;
  /** true: the result is added to out's values (f32 out, no activation); absent: out is overwritten. */
  accumulate?: boolean;
}

export interface NativeEmbedArgs {
  batch: number;
  T: number;
  C: number;
  vocab: number;
  nPositions: number;
  posOffset: number;
  ids: NativeTensor;
  wte: NativeTensor;
  wpe: NativeTensor;
  tokOut: NativeTensor;
  /** Absent: tokOut receives the sum of the token and position rows. */
  posOut?: NativeTensor;
  /** The ids were checked on the host (the backend may skip its check). */
  indicesChecked?: boolean;
}

export interface NativeSplitQkvArgs {
  batch: number;
  T: number;
  C: number;
  Tmax: number;
  offset: number;
  qkv: NativeTensor;
  q: NativeTensor;
  kCache: NativeTensor;
  vCache: NativeTensor;
}

export interface NativeLinearQkvArgs {
  batch: number;
  T: number;
  C: number;
  Tmax: number;
  offset: number;
  precision: number;
  /** [batch·T, C]: f32, or bf16 at bf16 precision. */
  x: NativeTensor;
  /** [C, 3C] (Conv1D layout). */
  weight: NativeTensor;
  bias?: NativeTensor;
  q: NativeTensor;
  kCache: NativeTensor;
  vCache: NativeTensor;
}

export interface NativeAttentionArgs {
  batch: number;
  T: number;
  Tmax: number;
  offset: number;
  C: number;
  nHead: number;
  /** 0 = f32, 1 = bf16 products (backends may compute in fp32 at either; absent: f32). */
  precision?: number;
  q: NativeTensor;
  kCache: NativeTensor;
  vCache: NativeTensor;
  out: NativeTensor;
}

export interface NativeAttentionTrainArgs {
  batch: number;
  T: number;
  C: number;
  nHead: number;
  /** 0 = f32, 1 = bf16 products (backends may compute in fp32 at either; absent: f32). */
  precision?: number;
  q: NativeTensor;
  k: NativeTensor;
  v: NativeTensor;
  out: NativeTensor;
  /** [batch, nHead, T] */
  lse: NativeTensor;
}

export type NativeAttentionBackwardArgs = {
  batch: number;
  T: number;
  C: number;
  nHead: number;
  /** 0 = f32, 1 = bf16 products (backends may compute in fp32 at either; absent: f32). */
  precision?: number;
  dout: NativeTensor;
  q: NativeTensor;
  k: NativeTensor;
  v: NativeTensor;
  out: NativeTensor;
  lse: NativeTensor;
} & (
  | { dq: NativeTensor; dk: NativeTensor; dv: NativeTensor }
  /** [B·T, 3C]: dq | dk | dv in each row. */
  | { dqkv: NativeTensor }
);

export interface NativeLayerNormBackwardArgs {
  rows: number;
  C: number;
  dout: NativeTensor;
  x: NativeTensor;
  weight: NativeTensor;
  mean: NativeTensor;
  rstd: NativeTensor;
  dx: NativeTensor;
  dweight: NativeTensor;
  dbias: NativeTensor;
  /** true: dx += ...; false: dx = ... */
  accumulate: boolean;
}

export interface NativeLinearBackwardArgs {
  rows: number;
  nIn: number;
  nOut: number;
  /** false: weight [nIn, nOut]; true: weight [nOut, nIn], used transposed. */
  transW: boolean;
  precision: number;
  /** f32, or bf16 (precision bf16, no dbias). */
  dout: NativeTensor;
  x: NativeTensor;
  /** Needed only with dx. */
  weight?: NativeTensor;
  /** Each absent: not computed. */
  dx?: NativeTensor;
  dweight?: NativeTensor;
  dbias?: NativeTensor;
  accumulate: boolean;
}

export interface NativeReluLinearBackwardArgs {
  rows: number;
  nIn: number;
  nOut: number;
  /** false: weight [nIn, nOut]; true: weight [nOut, nIn], used transposed. */
  transW: boolean;
  /** f32, or bf16 (no dbias). */
  dout: NativeTensor;
  /** bf16 [rows, nIn]: the ReLU's output, the layer's input. */
  x: NativeTensor;
  weight: NativeTensor;
  /** bf16 [rows, nIn]: the gradient of the ReLU's input. */
  dpre: NativeTensor;
  /** Each absent: not computed. */
  dweight?: NativeTensor;
  dbias?: NativeTensor;
  dpreBias?: NativeTensor;
}

/** The operands of unembedCrossEntropy and its backward (the logits x Wᵀ are never formed). */
export interface NativeUnembedCrossEntropyArgs {
  rows: number;
  V: number;
  C: number;
  precision: number;
  /** [rows, C]: f32 or bf16. */
  x: NativeTensor;
  /** [V, C]. */
  weight: NativeTensor;
  /** i32 [rows]; < 0: no target. */
  targets: NativeTensor;
  /** [rows]: the log-sum-exp of each row of logits (written by the forward, read by the backward). */
  lse: NativeTensor;
  /** The targets were checked on the host (the backend may skip its check). */
  indicesChecked?: boolean;
}

export interface NativeEmbedBackwardArgs {
  batch: number;
  T: number;
  C: number;
  vocab: number;
  nPositions: number;
  ids: NativeTensor;
  dtok: NativeTensor;
  dpos: NativeTensor;
  dwte: NativeTensor;
  dwpe: NativeTensor;
  /** The ids were checked on the host (the backend may skip its check). */
  indicesChecked?: boolean;
}

export interface NativeAdamWArgs {
  count: number;
  param: NativeTensor;
  grad: NativeTensor;
  m: NativeTensor;
  v: NativeTensor;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Step number, from 1. */
  t: number;
  /** Multiplies the gradient (clipping); default 1. */
  gradScale?: number;
  /** A one-element f32 tensor holding the squared global gradient norm: clipped to clipNorm on the backend. */
  clipSumSquares?: NativeTensor;
  clipNorm?: number;
}

export interface NativeAddon {
  abiVersion: number;
  NativeTensor: NativeTensorConstructor;
  setErrorFactory(factory: (code: string, op: string, deviceCode: number, message: string) => Error): void;
  cpuInfo(): { model: string; simd: string; simdDetected: string; threads: number };
  setThreads(n: number): void;
  setSimdCap(level: 'scalar' | 'avx2' | 'avx512'): string;
  loadCuda(path: string): { ok: boolean; reason?: string };
  backendInfo(name: string): NativeBackendInfo;
  /** Waits for the backend's queued work; throws the error of an earlier asynchronous failure. */
  synchronize(name: string): void;
  saeWorkspaceBytes(backend: string, batch: number, d: number, n: number, precision: number): number;
  saeEncode(args: NativeDims & { x: NativeTensor; W_enc: NativeTensor; b_enc: NativeTensor; b_dec: NativeTensor; out: NativeTensor }): Promise<void>;
  saeDecode(args: NativeDims & { f: NativeTensor; W_dec: NativeTensor; b_dec: NativeTensor; out: NativeTensor }): Promise<void>;
  saeGrads(args: NativeGradsArgs): Promise<NativeStats>;
  /** Resolves to undefined when args.readStats is false. */
  saeStep(args: NativeStepArgs): Promise<NativeStepStats | undefined>;
  sumSquares(args: { x: NativeTensor }): Promise<number>;
  reduceSumInto(args: { x: NativeTensor; square: boolean; scale: number; out: NativeTensor; index: number; accumulate: boolean }): Promise<void>;
  scaleInPlace(args: { x: NativeTensor; alpha: number }): Promise<void>;
  rowSqDist(args: { rows: number; d: number; a: NativeTensor; b?: NativeTensor; out: NativeTensor }): Promise<void>;
  gatherRows(args: { count: number; d: number; src: NativeTensor; srcRows: number; idx: NativeTensor; idxOffset: number; dst: NativeTensor; dstRow: number; indicesChecked?: boolean }): Promise<void>;
  sparseRows(args: { rows: number; n: number; x: NativeTensor; threshold: number; capacity: number }): Promise<{ rowPtr: Int32Array; cols: Int32Array; values: Float32Array }>;
  columnStats(args: { rows: number; n: number; x: NativeTensor }): Promise<{ sum: Float64Array; sumsq: Float64Array; nonzero: Float64Array }>;
  resampleCandidates(args: NativeResampleCandidatesArgs): Promise<void>;
  saeResample(args: NativeSaeResampleArgs): Promise<{ meanLiveEncoderNorm: number; live: number; resampled: number }>;
  layerNorm(args: NativeLayerNormArgs): Promise<void>;
  linear(args: NativeLinearArgs): Promise<void>;
  activation(args: { kind: number; count: number; x: NativeTensor; out: NativeTensor }): Promise<void>;
  add(args: { count: number; a: NativeTensor; b: NativeTensor; out: NativeTensor }): Promise<void>;
  embed(args: NativeEmbedArgs): Promise<void>;
  splitQkv(args: NativeSplitQkvArgs): Promise<void>;
  linearQkv(args: NativeLinearQkvArgs): Promise<void>;
  attention(args: NativeAttentionArgs): Promise<void>;
  crossEntropy(args: { rows: number; V: number; logits: NativeTensor; targets: NativeTensor; out: NativeTensor; indicesChecked?: boolean }): Promise<void>;
  argmaxRows(args: { rows: number; V: number; logits: NativeTensor; out: NativeTensor }): Promise<void>;
  klRows(args: { rows: number; V: number; p: NativeTensor; q: NativeTensor; out: NativeTensor }): Promise<void>;
  attentionTrain(args: NativeAttentionTrainArgs): Promise<void>;
  attentionBackward(args: NativeAttentionBackwardArgs): Promise<void>;
  layerNormBackward(args: NativeLayerNormBackwardArgs): Promise<void>;
  linearBackward(args: NativeLinearBackwardArgs): Promise<void>;
  activationBackward(args: { kind: number; count: number; dpost: NativeTensor; pre: NativeTensor; dpre: NativeTensor }): Promise<void>;
  reluLinearBackward(args: NativeReluLinearBackwardArgs): Promise<void>;
  crossEntropyBackward(args: { rows: number; V: number; logits: NativeTensor; targets: NativeTensor; losses: NativeTensor; scale: number; gradient?: NativeTensor; indicesChecked?: boolean }): Promise<void>;
  embedBackward(args: NativeEmbedBackwardArgs): Promise<void>;
  unembedCrossEntropy(args: NativeUnembedCrossEntropyArgs & { losses: NativeTensor }): Promise<void>;
  /** dlogits: bf16 [rows, V]. */
  unembedCrossEntropyBackward(args: NativeUnembedCrossEntropyArgs & { scale: number; dlogits: NativeTensor }): Promise<void>;
  adamW(args: NativeAdamWArgs): Promise<void>;
}
