/*
 * backend.h — the interface every compute backend implements (CPU, built into the core addon;
 * CUDA, a separate shared library loaded at run time).
 *
 * A backend is a table of C functions so that it can cross a dlopen() boundary without C++ ABI
 * concerns. Every pointer named "device" below belongs to the backend's own memory space (host
 * memory for CPU, GPU memory for CUDA); every pointer named "host" is ordinary host memory.
 *
 * Errors: every fallible function returns an ms_code and, when it is not MS_OK, fills *err
 * (never NULL). Functions never abort the process and never throw across the boundary.
 *
 * Layouts are row-major and follow SAELens: W_enc [d, n], b_enc [n], W_dec [n, d], b_dec [d],
 * activations x [B, d], features f [B, n] — d = d_in, n = d_sae, B = batch rows.
 * The transformer ops (ABI 3, GPT-2 forward as in llm.c) use C = model width, V = vocabulary,
 * B = batch, T = new tokens per sequence, Tmax = key/value cache length; token rows are [B*T]
 * in row-major [B, T] order. The backward ops (ABI 5) follow llm.c's training pass with the same
 * names; gradients of parameters accumulate (+=) so that layers and steps can share buffers, and
 * gradients of activations are overwritten (=) unless an op says otherwise.
 */
#ifndef MONOSEMANTIC_BACKEND_H
#define MONOSEMANTIC_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MS_BACKEND_ABI_VERSION 17

typedef enum {
  MS_OK = 0,
  MS_ERR_INVALID = 1,      /* an argument the core should have rejected */
  MS_ERR_OOM = 2,          /* device or host allocation failed */
  MS_ERR_DEVICE = 3,       /* driver / runtime failure; device_code holds e.g. the cudaError_t */
  MS_ERR_UNSUPPORTED = 4,  /* not available on this backend or device */
  MS_ERR_UNAVAILABLE = 5   /* backend cannot start (no driver, stub driver, no device) */
} ms_code;

typedef struct {
  int code;          /* ms_code */
  int device_code;   /* backend-specific code (cudaError_t), 0 when none */
  char op[64];       /* the operation that failed, e.g. "cudaMalloc" or "sae_grads" */
  char message[512]; /* human-readable detail */
} ms_error;

typedef enum { MS_F32 = 0, MS_BF16 = 1, MS_I32 = 2 } ms_dtype;

/* Matrix-product precision: F32 = fp32 operands and accumulation; BF16 = operands rounded to
 * bf16, products accumulated in fp32 (parameters and optimizer state always stay fp32). */
typedef enum { MS_PREC_F32 = 0, MS_PREC_BF16 = 1 } ms_precision;

/* Sparsity penalty.
 * L1:          lambda * sum_i f_i                 (paper, 2023; decoder rows kept unit-norm)
 * L1_DECNORM:  lambda * sum_i f_i * ||W_dec[i]||  (April 2024 update; decoder unconstrained) */
typedef enum { MS_PENALTY_L1 = 0, MS_PENALTY_L1_DECNORM = 1 } ms_penalty;

/* Elementwise activations of the transformer ops.
 * GELU_TANH (HF "gelu_new", GPT-2): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)));
 * GELU_ERF (exact "gelu"): 0.5 x (1 + erf(x / sqrt(2)));  RELU: x > 0 ? x : 0 (NaN -> 0). */
typedef enum { MS_ACT_NONE = -1, MS_ACT_GELU_TANH = 0, MS_ACT_GELU_ERF = 1, MS_ACT_RELU = 2 } ms_activation;

typedef struct {
  char name[256];
  size_t total_bytes;
  size_t free_bytes;
  int multiprocessors;
  int cc_major, cc_minor;
} ms_device_info;

typedef struct {
  int driver_version;  /* e.g. 13000 for CUDA 13.0; 0 when not applicable */
  int runtime_version;
  int device_count;
  int hopper_gemm;     /* 1 when the backend's device runs the Hopper GEMM (wgmma + TMA, sm_90a) */
} ms_runtime_info;

/* Everything one SAE forward+backward needs. All arrays are device pointers, fp32 unless noted.
 * loss = mean_b ||x_b - xhat_b||^2 + lambda * mean_b sum_i f_bi * c_i,
 *   c_i = 1 (L1) or ||W_dec[i]|| (L1_DECNORM). */
typedef struct {
  int batch, d, n;
  int precision;          /* ms_precision */
  int penalty;            /* ms_penalty */
  float l1_coeff;         /* lambda */
  const float* x;         /* [B, d] */
  const float* W_enc;     /* [d, n] */
  const float* b_enc;     /* [n] */
  const float* W_dec;     /* [n, d] */
  const float* b_dec;     /* [d] */
  float* dW_enc;          /* [d, n]  out: dloss/dW_enc */
  float* db_enc;          /* [n]     out */
  float* dW_dec;          /* [n, d]  out */
  float* db_dec;          /* [d]     out */
  int32_t* fire_counts;   /* [n]     in/out: += number of rows b with f_bi > 0 (saturating at INT32_MAX); may be NULL */
  void* workspace;        /* >= sae_workspace_bytes(batch, d, n, precision) bytes, the start of a
                           * block from this backend's alloc() (CUDA relies on its 256-byte alignment) */
} ms_sae_grads_args;

typedef struct {
  double loss;     /* mse + l1_coeff * sparsity */
  double mse;      /* mean_b ||x_b - xhat_b||^2 */
  double sparsity; /* mean_b sum_i f_bi * c_i */
  double l0;       /* mean_b #{i : f_bi > 0} */
} ms_sae_stats;

/* One Adam update (PyTorch semantics, no weight decay), on the scaled gradient g = grad_scale * grad:
 * m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 * p -= lr * (m / bias1) / (sqrt(v / bias2) + eps),  bias1 = 1 - b1^t, bias2 = 1 - b2^t. */
typedef struct {
  float lr, beta1, beta2, eps;
  float bias1, bias2;  /* computed by the caller in double and rounded once */
  float grad_scale;    /* 1 = plain Adam; < 1 when the gradient norm is clipped */
} ms_adam_hparams;

/* One tensor under Adam: param, its gradient (which sae_update may modify: see below), moments. */
typedef struct {
  float* param;
  float* grad;
  float* m;
  float* v;
  size_t count;
} ms_adam_slot;

/* The SAE's whole update after sae_grads, in one call (ABI 7):
 *   constrain_decoder: decoder_remove_parallel_grad(n, d, W_dec.param, W_dec.grad);
 *   adam_update of W_enc, b_enc, W_dec and b_dec with hp;
 *   constrain_decoder: decoder_renormalize(n, d, W_dec.param).
 * Results equal those calls made one by one, to the bit. Counts: W_enc d*n, b_enc n, W_dec n*d,
 * b_dec d. */
typedef struct {
  int n, d;
  int constrain_decoder;
  ms_adam_slot W_enc, b_enc, W_dec, b_dec;
  ms_adam_hparams hp;
} ms_sae_update_args;

/* Dead-feature resampling, part 1: weighted sampling of inputs without replacement, streamed.
 * Over a pass of many chunks, each input r (global index offset + row) gets the key
 *   key_r = log(u_r) / loss_r^2,  u_r = ms_uniform_open(seed, offset + row) (counter_rng.h),
 * (-inf when loss_r^2 is 0 or not a number), and the k inputs with the largest keys are kept:
 * a sample of k inputs drawn without replacement with probability proportional to loss^2
 * (Efraimidis & Spirakis, 2006). cand_keys stays sorted in descending order (ties: earlier
 * candidates first, then rows in order); fill it with -inf before the first chunk. */
typedef struct {
  int k, batch, d;
  uint64_t seed;
  uint64_t offset;     /* global index of this chunk's row 0 */
  const float* x;      /* [batch, d]  inputs */
  const float* loss;   /* [batch]     per-input loss */
  float* cand_keys;    /* [k]         in/out, descending */
  float* cand_rows;    /* [k, d]      in/out, row i = the input holding cand_keys[i] */
} ms_resample_candidates_args;

/* Dead-feature resampling, part 2 (the paper's recipe). With mean_norm = the mean L2 norm of the
 * encoder columns W_enc[:, j] of features j not in dead (1 if every feature is dead), for each
 * slot i < count whose cand_keys[i] is finite and whose cand_rows[i] is nonzero, feature j = dead[i]:
 *   W_dec[j, :] = r / ||r||,  W_enc[:, j] = enc_norm_factor * mean_norm * r / ||r||,  b_enc[j] = 0,
 * and the Adam moments of those entries are zeroed (r = cand_rows[i]). Other entries untouched. */
typedef struct {
  int d, n, count;
  const int32_t* dead;      /* [count] distinct feature indices in [0, n) */
  const float* cand_keys;   /* [count] */
  const float* cand_rows;   /* [count, d] */
  float enc_norm_factor;    /* 0.2 in the paper */
  float* W_enc;             /* [d, n] */
  float* b_enc;             /* [n] */
  float* W_dec;             /* [n, d] */
  float *m_W_enc, *v_W_enc; /* [d, n] */
  float *m_b_enc, *v_b_enc; /* [n] */
  float *m_W_dec, *v_W_dec; /* [n, d] */
} ms_sae_resample_args;

typedef struct {
  double mean_live_encoder_norm; /* the mean norm of the live encoder columns (of all when none is live) */
  int live;       /* features not in dead */
  int resampled;  /* slots applied */
} ms_sae_resample_stats;

typedef struct ms_backend {
  int abi_version; /* MS_BACKEND_ABI_VERSION */
  const char* name; /* "cpu" or "cuda" */

  /* Start-up and facts. init() is called before anything else; after a failure it may be called
   * again, after a success it does nothing. device_info reports free memory for the device in use. */
  int (*init)(ms_error* err);
  int (*runtime_info)(ms_runtime_info* out, ms_error* err);
  int (*device_info)(int device, ms_device_info* out, ms_error* err);

  /* Memory. alloc returns blocks aligned to at least 64 bytes (CPU) or 256 bytes (CUDA); alloc of
   * 0 bytes returns a valid unique pointer. download is complete on return. upload and copy may
   * stay queued in order with the backend's other work (ABI 10), like an op: an upload's host
   * source may be reused on return. */
  int (*alloc)(size_t bytes, void** out, ms_error* err);
  void (*free)(void* ptr);
  int (*upload)(void* dst_device, const void* src_host, size_t bytes, ms_error* err);
  int (*download)(void* dst_host, const void* src_device, size_t bytes, ms_error* err);
  int (*copy)(void* dst_device, const void* src_device, size_t bytes, ms_error* err);
  /* dst[i] = value, for i < count: converted to float first, then to dtype as cast() does */
  int (*fill)(void* dst_device, int dtype, size_t count, double value, ms_error* err);
  /* dst[i] = (dst_dtype) src[i]; f32 <-> bf16 rounds to nearest even; i32 -> f32 rounds to nearest;
   * f32 -> i32 truncates toward zero and saturates (NaN -> 0), as __float2int_rz. */
  int (*cast)(void* dst_device, int dst_dtype, const void* src_device, int src_dtype, size_t count,
              ms_error* err);
  /* Wait for all queued work; surfaces asynchronous failures. */
  int (*synchronize)(ms_error* err);

  /* SAE ops. */
  size_t (*sae_workspace_bytes)(int batch, int d, int n, int precision);
  /* f[B, n] = ReLU((x - b_dec) W_enc + b_enc) */
  int (*sae_encode)(int batch, int d, int n, int precision, const float* x, const float* W_enc,
                    const float* b_enc, const float* b_dec, float* f, ms_error* err);
  /* xhat[B, d] = f W_dec + b_dec */
  int (*sae_decode)(int batch, int d, int n, int precision, const float* f, const float* W_dec,
                    const float* b_dec, float* xhat, ms_error* err);
  /* Loss and all four gradients (see ms_sae_grads_args); stats copied to the host, or not computed
   * for the host when stats_host is NULL (ABI 10: no wait for the device then). */
  int (*sae_grads)(const ms_sae_grads_args* args, ms_sae_stats* stats_host, ms_error* err);
  /* dW_dec[i] -= (dW_dec[i] . W_dec[i]) / ||W_dec[i]||^2 * W_dec[i], rows i < n (zero rows untouched) */
  int (*decoder_remove_parallel_grad)(int n, int d, const float* W_dec, float* dW_dec, ms_error* err);
  /* W_dec[i] /= ||W_dec[i]|| for rows with nonzero norm */
  int (*decoder_renormalize)(int n, int d, float* W_dec, ms_error* err);
  int (*adam_update)(size_t count, float* param, const float* grad, float* m, float* v,
                     const ms_adam_hparams* hp, ms_error* err);

  /* Reductions and elementwise ops. */
  /* *out_host = sum_i x[i]^2, accumulated in double */
  int (*sum_squares)(size_t count, const float* x, double* out_host, ms_error* err);
  /* x[i] *= alpha */
  int (*scale)(size_t count, float* x, float alpha, ms_error* err);
  /* out[r] = sum_j (a[r, j] - b[r, j])^2 for r < rows, accumulated in double; b == NULL: sum_j a[r, j]^2 */
  int (*row_sq_dist)(int rows, int d, const float* a, const float* b, float* out, ms_error* err);

  /* Dead-feature resampling (see ms_resample_candidates_args and ms_sae_resample_args). */
  int (*resample_candidates)(const ms_resample_candidates_args* args, ms_error* err);
  int (*sae_resample)(const ms_sae_resample_args* args, ms_sae_resample_stats* stats_host, ms_error* err);

  /* ---- Transformer forward ops (ABI 3). All fp32 unless noted; sizes are positive. ---- */
  /* Layer norm over the last dim of x [rows, C]: mean_r = mean_j x[r, j],
   * rstd_r = 1 / sqrt(mean_j (x[r, j] - mean_r)^2 + eps) (biased variance),
   * out[r, j] = (x[r, j] - mean_r) * rstd_r * weight[j] + bias[j]. out may equal x.
   * mean, rstd [rows]: optional outputs (NULL: not saved), kept for a backward pass. out_bf16
   * (ABI 12): when not NULL, out goes there rounded to bf16 instead (out unused, may be NULL). */
  int (*layernorm)(int rows, int C, float eps, const float* x, const float* weight, const float* bias,
                   float* out, uint16_t* out_bf16, float* mean, float* rstd, ms_error* err);
  /* out[rows, n_out] = x[rows, n_in] op(W) + bias: trans_w = 0: W [n_in, n_out] (Conv1D layout);
   * trans_w = 1: W [n_out, n_in] used transposed (nn.Linear layout). bias [n_out] or NULL.
   * precision: ms_precision (BF16: x and W rounded to bf16, fp32 accumulation; the bias add is
   * fp32). out must not overlap x or W. act (ABI 9): ms_activation applied to the result (the
   * values of activation() on it), or MS_ACT_NONE; a backend may fuse it with the bias add.
   * out_bf16 (ABI 12; BF16 only): when not NULL, the result (bias and activation applied in fp32)
   * goes there rounded to bf16 [rows, n_out] instead, and out is unused (may be NULL). x_bf16
   * (ABI 12; BF16 only): when not NULL, x is read from it (bf16 [rows, n_in]: the operand as it is)
   * and x is unused (may be NULL). accumulate (ABI 13): nonzero: the result (bias included) is
   * added to out's values, out[r, j] = out[r, j] + (x op(W) + bias)[r, j], the fp32 addition of
   * add() after a linear into a temporary (a residual stream taking a branch); fp32 out only, no
   * activation. */
  int (*linear)(int rows, int n_in, int n_out, int trans_w, int precision, const float* x, const uint16_t* x_bf16,
                const float* W, const float* bias, float* out, uint16_t* out_bf16, int act, int accumulate,
                ms_error* err);
  /* out[i] = act(x[i]) for i < count (kind: ms_activation); out may equal x. */
  int (*activation)(int kind, size_t count, const float* x, float* out, ms_error* err);
  /* out[i] = a[i] + b[i] for i < count; out may equal a or b. */
  int (*add)(size_t count, const float* a, const float* b, float* out, ms_error* err);
  /* ids: int32 [B*T]; wte [V, C]; wpe [n_positions, C]; for row r = b*T + t:
   * tok_out[r, :] = wte[ids[r], :], pos_out[r, :] = wpe[pos_offset + t, :].
   * MS_ERR_INVALID, naming the first bad index, when an id is outside [0, V) or
   * pos_offset + T > n_positions; nothing is written then.
   * pos_out NULL (ABI 9): tok_out[r, :] = wte[ids[r], :] + wpe[pos_offset + t, :] instead, the
   * sum a residual stream starts from (the fp32 additions of add()).
   * indices_checked (ABI 9, here and in every op with token ids, targets or row indices): nonzero
   * when the caller has checked every index on the host; a backend whose own check waits for the
   * device (CUDA) skips it then, and an index out of range is undefined behaviour. */
  int (*embed)(int batch, int T, int C, int V, int n_positions, int pos_offset, const int32_t* ids,
               const float* wte, const float* wpe, float* tok_out, float* pos_out, int indices_checked,
               ms_error* err);
  /* qkv [B*T, 3C] = q | k | v along the last dim. For row r = b*T + t:
   * q[r, :] = qkv[r, 0:C]; k_cache[b, offset + t, :] = qkv[r, C:2C]; v_cache[b, offset + t, :] =
   * qkv[r, 2C:3C]. Caches [B, Tmax, C]; offset + T <= Tmax; other cache rows untouched. */
  int (*split_qkv)(int batch, int T, int C, int Tmax, int offset, const float* qkv, float* q,
                   float* k_cache, float* v_cache, ms_error* err);
  /* Causal attention of T new queries per sequence at positions offset .. offset+T-1 over cached
   * keys/values 0 .. offset+T-1. hd = C / n_head (C % n_head == 0). For row r = b*T + t, p =
   * offset + t, head h (columns h*hd .. (h+1)*hd - 1):
   *   s_j = (q[r, h] . k_cache[b, j, h]) / sqrt(hd), j <= p;
   *   out[r, h] = sum_j softmax(s)_j v_cache[b, j, h].
   * q, out [B*T, C] (out must not overlap q or the caches); caches [B, Tmax, C]. Online softmax:
   * no T x T matrix is formed. MS_ERR_UNSUPPORTED when a backend cannot take the head size.
   * precision (ABI 9): ms_precision of the two products q.k and softmax.v; a backend may compute
   * in fp32 at either (the CPU backend does). out_bf16 (ABI 13; BF16 only): when not NULL, out
   * goes there rounded to bf16 instead (out unused, may be NULL). */
  int (*attention)(int batch, int T, int Tmax, int offset, int C, int n_head, int precision, const float* q,
                   const float* k_cache, const float* v_cache, float* out, uint16_t* out_bf16, ms_error* err);
  /* out[r] = logsumexp(logits[r, :]) - logits[r, targets[r]] for logits [rows, V], targets int32
   * [rows]; targets[r] < 0: out[r] = 0 (ignored position). MS_ERR_INVALID, naming the first bad
   * row, when a target is >= V; nothing is written then. logits_bf16 (ABI 12): when not NULL, the
   * logits are read from it (bf16 [rows, V], computed with in fp32) and logits is unused (may be NULL). */
  int (*cross_entropy)(int rows, int V, const float* logits, const uint16_t* logits_bf16, const int32_t* targets,
                       float* out, int indices_checked, ms_error* err);
  /* out[r] = the first v maximising logits[r, v] (int32 [rows]); NaN counts as the largest
   * value, as torch.argmax. */
  int (*argmax_rows)(int rows, int V, const float* logits, int32_t* out, ms_error* err);

  /* dst[i, :] = src[idx[i], :] for i < count, rows of d floats; every idx[i] must be in
   * [0, src_rows) (checked before anything is written: MS_ERR_INVALID names the first bad one). */
  int (*gather_rows)(int count, int d, const float* src, int src_rows, const int32_t* idx, float* dst,
                     int indices_checked, ms_error* err);

  /* ---- Transformer backward ops and AdamW (ABI 5). All fp32 unless noted; sizes are positive.
   * Training runs without a cache: keys and values are [B*T, C] like the queries (offset 0,
   * Tmax = T). q/k/v splitting for training is split_qkv with batch 1, T = Tmax = B*T. ---- */
  /* attention with offset 0 and Tmax = T over k, v [B*T, C], also saving
   * lse[(b*n_head + h)*T + t] = log sum_{j <= t} exp(s_j) (the scaled scores of that query), [B, n_head, T]. */
  int (*attention_train)(int batch, int T, int C, int n_head, int precision, const float* q, const float* k,
                         const float* v, float* out, float* lse, ms_error* err);
  /* The backward of attention_train, from its saved out and lse (no T x T matrix): for head h,
   * P_tj = exp(s_tj - lse_t) (j <= t), D_t = dout_t . out_t (head columns), dS_tj = P_tj (dout_t . v_j - D_t):
   *   dq_t = sum_j dS_tj k_j / sqrt(hd);  dk_j = sum_t dS_tj q_t / sqrt(hd);  dv_j = sum_t P_tj dout_t.
   * dq, dk, dv [B*T rows of ld_grad floats, C used] are overwritten, and their elements must not
   * overlap each other or the inputs; ld_grad >= C (ABI 16; C: [B*T, C] arrays). They may interleave:
   * dq = dqkv, dk = dqkv + C, dv = dqkv + 2C with ld_grad = 3C write the gradient of linear_qkv's
   * product [B*T, 3C] (ABI 17: no separate merge_qkv). precision as in attention (ABI 9): of the
   * products with q, k, v, dout, P and dS. */
  int (*attention_backward)(int batch, int T, int C, int n_head, int precision, const float* dout, const float* q,
                            const float* k, const float* v, const float* out, const float* lse, float* dq, float* dk,
                            float* dv, int ld_grad, ms_error* err);
  /* The backward of layernorm from its saved mean, rstd [rows]: per row r, with n_j = (x[r, j] - mean_r) rstd_r
   * and g_j = dout[r, j] weight[j], and means over j < C,
   *   dx[r, j] (= or += when accumulate) = rstd_r (g_j - mean(g) - n_j mean(g n));
   *   dweight[j] += sum_r dout[r, j] n[r, j];  dbias[j] += sum_r dout[r, j].
   * dx must not overlap the inputs. (The CPU backend, whose forward subtracts the mean in double,
   * takes x - mean_r in double here too: the saved mean is that mean rounded to fp32.) */
  int (*layernorm_backward)(int rows, int C, const float* dout, const float* x, const float* weight,
                            const float* mean, const float* rstd, float* dx, float* dweight, float* dbias,
                            int accumulate, ms_error* err);
  /* The backward of linear (same rows, n_in, n_out, trans_w, precision) from dout [rows, n_out]:
   *   dx [rows, n_in] (= or += when accumulate) = dout op(W)^T;  dW += x^T dout (trans_w = 0, W [n_in, n_out])
   *   or dout^T x (trans_w = 1, W [n_out, n_in]);  dbias [n_out] += sum_rows dout (fp32 operands).
   * dx, dW or dbias may be NULL (not computed). BF16: dout, x and W rounded to bf16, fp32 accumulation.
   * Outputs must not overlap the inputs or each other. dout_bf16 (ABI 9; BF16 only): when not NULL,
   * the bf16 bits of the gradient [rows, n_out], used by the products instead of rounding dout (which
   * is then unused and may be NULL); dbias must be NULL then. x_bf16 (ABI 12; BF16 only): when not
   * NULL, the bf16 bits of x [rows, n_in], used by the dW product as they are (x unused, may be NULL). */
  int (*linear_backward)(int rows, int n_in, int n_out, int trans_w, int precision, const float* dout,
                         const float* x, const uint16_t* x_bf16, const float* W, float* dx, float* dW, float* dbias,
                         int accumulate, const uint16_t* dout_bf16, ms_error* err);
  /* dpre[i] = dpost[i] * act'(pre[i]) (kind: ms_activation; RELU: 1 where pre > 0, else 0);
   * dpre may equal dpost. pre_bf16 (ABI 12): when not NULL, pre is read from it (bf16; e.g. a ReLU's
   * bf16 output, whose sign is its input's) and pre is unused (may be NULL). */
  int (*activation_backward)(int kind, size_t count, const float* dpost, const float* pre, const uint16_t* pre_bf16,
                             float* dpre, ms_error* err);
  /* Fused softmax cross-entropy over logits [rows, V], targets int32 [rows]: losses[r] =
   * logsumexp(logits[r, :]) - logits[r, targets[r]], and in place logits[r, v] = (softmax(logits[r, :])_v -
   * [v == targets[r]]) * scale; targets[r] < 0: losses[r] = 0 and the row becomes 0. MS_ERR_INVALID,
   * naming the first bad row, when a target is >= V; nothing is written then. grad_bf16 (ABI 9):
   * when not NULL, the gradient goes there instead, rounded to bf16 [rows, V], and logits are left
   * unchanged (linear_backward's dout_bf16 reads it). logits_bf16 (ABI 12): when not NULL, the
   * logits are read from it (bf16 [rows, V], computed with in fp32; logits is unused and may be
   * NULL) and the gradient goes to grad_bf16, which may equal logits_bf16 (in place), or when that
   * is NULL, in place into logits_bf16. */
  int (*cross_entropy_backward)(int rows, int V, float* logits, uint16_t* logits_bf16, const int32_t* targets,
                                float* losses, float scale, uint16_t* grad_bf16, int indices_checked, ms_error* err);
  /* The backward of embed with pos_offset 0: for row r = b*T + t, dwte[ids[r], :] += dtok[r, :] and
   * dwpe[t, :] += dpos[r, :] (dtok may equal dpos). T <= n_positions. MS_ERR_INVALID, naming the
   * first bad index, when an id is outside [0, V); nothing is written then. */
  int (*embed_backward)(int batch, int T, int C, int V, int n_positions, const int32_t* ids, const float* dtok,
                        const float* dpos, float* dwte, float* dwpe, int indices_checked, ms_error* err);
  /* AdamW (PyTorch semantics, decoupled weight decay): param[i] *= decay, then the adam_update step.
   * decay = 1 - lr * weight_decay, computed by the caller in double and rounded once. With
   * clip_sum_sq (a backend scalar s: the squared global gradient norm, as reduce_sum_into leaves it)
   * and clip_norm > 0, the gradient scale is hp->grad_scale * clip_norm / sqrt(s) when sqrt(s) >
   * clip_norm (the factor computed in double and rounded once), so clipping needs no read-back. */
  int (*adamw_update)(size_t count, float* param, const float* grad, float* m, float* v, const ms_adam_hparams* hp,
                      float decay, const float* clip_sum_sq, float clip_norm, ms_error* err);

  /* ---- Feature analysis (ABI 6): one pass over a batch of activations on the device, results on
   * the host, so that per-feature statistics cost the host only the nonzero entries. ---- */
  /* The entries of x [rows, n] greater than threshold, row by row (CSR), written to host memory:
   * row_ptr_host [rows + 1] with row_ptr[0] = 0; row r's entries are k in [row_ptr[r], row_ptr[r + 1]),
   * cols_host[k] increasing within the row and vals_host[k] = x[r, cols_host[k]]. NaN is not greater.
   * row_ptr is always written; cols and vals only when row_ptr[rows] <= capacity (otherwise nothing
   * else is written and the caller calls again with room for row_ptr[rows] entries). */
  int (*sparse_rows)(int rows, int n, const float* x, float threshold, int64_t* row_ptr_host, size_t capacity,
                     int32_t* cols_host, float* vals_host, ms_error* err);
  /* Per column j of x [rows, n], accumulated in double and written to host memory (each output may
   * be NULL): sum_host[j] = sum_r x[r, j], sumsq_host[j] = sum_r x[r, j]^2,
   * nonzero_host[j] = #{r : x[r, j] != 0}. Deterministic for given sizes. */
  int (*column_stats)(int rows, int n, const float* x, double* sum_host, double* sumsq_host, double* nonzero_host,
                      ms_error* err);

  /* ---- SAE update (ABI 7): see ms_sae_update_args. ---- */
  int (*sae_update)(const ms_sae_update_args* args, ms_error* err);

  /* ---- Evaluation (ABI 8). ---- */
  /* out[r] = KL(softmax(p[r, :]) || softmax(q[r, :])) = sum_v P_v (log P_v - log Q_v) for logits
   * p, q [rows, V]; no probabilities are materialised. */
  int (*kl_rows)(int rows, int V, const float* p_logits, const float* q_logits, float* out, ms_error* err);

  /* ---- Reductions that stay on the backend (ABI 11). ---- */
  /* out[0] = (accumulate ? out[0] : 0) + scale * sum_i x[i] (square = 0) or x[i]^2 (square = 1), the
   * sum in double and the result rounded to float once; out is a backend scalar, so nothing waits. */
  int (*reduce_sum_into)(size_t count, const float* x, int square, double scale, float* out, int accumulate,
                         ms_error* err);

  /* ---- The attention's input product and split in one call (ABI 13). ---- */
  /* qkv = x W + bias as linear computes it (W [C, 3C], Conv1D layout; bias [3C] or NULL; precision,
   * x and x_bf16 as there), split as split_qkv splits it: q [B*T, C], the caches [B, Tmax, C] at
   * offset (offset + T <= Tmax). The same values as linear into a temporary then split_qkv; a
   * backend may store each column of the product where it goes from the product's epilogue. q and
   * the caches must not overlap x, W, bias or each other. */
  int (*linear_qkv)(int batch, int T, int C, int Tmax, int offset, int precision, const float* x,
                    const uint16_t* x_bf16, const float* W, const float* bias, float* q, float* k_cache,
                    float* v_cache, ms_error* err);

  /* ---- The unembedding product fused with the softmax cross-entropy (ABI 14) ----
   * logits[r, v] = x[r, :] . W[v, :] for x [rows, C] and W [V, C] (fp32: the parameter), never formed
   * in memory:
   *   lse[r] = logsumexp_v logits[r, v] (every row);
   *   losses[r] = lse[r] - logits[r, targets[r]], and 0 where targets[r] < 0.
   * x is fp32, or (x_bf16 not NULL) bf16 bits [rows, C] and x unused (may be NULL). precision: ms_precision
   * of the product (BF16: x and W rounded to bf16, fp32 accumulation; F32: fp32 operands). MS_ERR_INVALID,
   * naming the first bad row, when a target is >= V; nothing is written then. MS_ERR_UNSUPPORTED where a
   * backend has no kernel for (C, precision) (the CUDA backend: BF16 and C in {32, 64, 128} only). */
  int (*unembed_cross_entropy)(int rows, int V, int C, int precision, const float* x, const uint16_t* x_bf16,
                               const float* W, const int32_t* targets, float* lse, float* losses,
                               int indices_checked, ms_error* err);
  /* Its gradient with respect to the logits, from lse: dlogits_bf16[r, v] = bf16((exp(logits[r, v] - lse[r])
   * - [v == targets[r]]) * scale) [rows, V]; rows with targets[r] < 0 are 0. Same operands, precision and
   * errors; dlogits_bf16 must not overlap the inputs. (linear_backward reads it as dout_bf16.) */
  int (*unembed_cross_entropy_backward)(int rows, int V, int C, int precision, const float* x,
                                        const uint16_t* x_bf16, const float* W, const int32_t* targets,
                                        const float* lse, float scale, uint16_t* dlogits_bf16,
                                        int indices_checked, ms_error* err);

  /* ---- A linear layer's backward through the ReLU before it (ABI 15) ----
   * For out = x op(W) + bias where x = ReLU(pre) was kept in bf16 (x_bf16 [rows, n_in]; op as in
   * linear_backward), BF16 only, from dout [rows, n_out] (fp32, or dout_bf16 and dout unused):
   *   dW += x^T dout (trans_w = 0, W [n_in, n_out]) or dout^T x (trans_w = 1, W [n_out, n_in]);
   *   dbias [n_out] += sum_rows dout (fp32 dout only; or NULL);
   *   dpre_bf16 [rows, n_in] = bf16(x > 0 ? (dout op(W)^T) : 0), the gradient of pre;
   *   dpre_bias [n_in] += sum_rows of that gradient before rounding (the bias gradient of the layer
   *     that made pre; or NULL).
   * The values of linear_backward into an fp32 dx, activation_backward (RELU, pre_bf16 = x_bf16) in
   * place, dpre_bias's column sums over it, then its rounding, up to the order of dpre_bias's sums; a
   * backend may do the mask, the rounding and the sums in the product's epilogue, so that the fp32
   * gradients never reach memory. dW, dbias, dpre_bf16 and dpre_bias must not overlap the inputs or
   * each other. */
  int (*relu_linear_backward)(int rows, int n_in, int n_out, int trans_w, const float* dout,
                              const uint16_t* dout_bf16, const uint16_t* x_bf16, const float* W, float* dW,
                              float* dbias, uint16_t* dpre_bf16, float* dpre_bias, ms_error* err);
} ms_backend;

/* Exported by the CUDA shared library; returns NULL if abi_version is not supported. */
typedef const ms_backend* (*ms_backend_entry_fn)(int abi_version);
#define MS_CUDA_ENTRY_SYMBOL "monosemantic_cuda_backend"

#ifdef __cplusplus
}
#endif

#endif /* MONOSEMANTIC_BACKEND_H */
