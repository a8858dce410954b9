/*
 * gemm_bf16.cu — playground for the bf16 GEMMs of the SAE step: correctness sweep and timing
 * sweep of each version against a float64 CPU reference and cuBLAS (loaded at run time, when
 * present, as the measured ceiling; the library never links it).
 *
 * Versions (C[M, N] = op(A) op(B), bf16 operands, fp32 accumulation and output):
 *   1  simple   native/cuda/gemm.cu, the SIMT tiled kernel (MONOSEMANTIC_CUDA_KERNELS=simple)
 *   2  tensor   native/cuda/gemm_tensor.cu, mma.sync m16n8k16 + ldmatrix + 3-stage cp.async
 *               (split K, with the sum pass, where the output has too few tiles for the GPU)
 *   3  wgmma    native/cuda/gemm_wgmma.cu, wgmma m64n256k16 fed by TMA through a 4-stage mbarrier
 *               ring, a producer warpgroup and two consumers (sm_90a); each operand read as stored
 *               (K-major, or MN-major through wgmma's transposed operands): NN, NT and TN with
 *               leading dimensions multiples of 8 ("-" elsewhere);
 *               split K, with the sum pass, where the output has too few tiles for the GPU
 *   4  square   version 3 with 128 x 128 tiles (wgmma m64n128k16), two blocks per multiprocessor of
 *               three stages each (MONOSEMANTIC_CUDA_WGMMA_TILE=128): one block's stores and
 *               pipeline fill overlap the other's products
 *   5  wide-ns  version 3's kernel with an epilogue that stores nothing (timing only): a tile's
 *               loads and products alone; its difference from version 3 is the stores' share
 *   6  sq-ns    the same for version 4
 *   7  wide-tma version 3's kernel whose consumers write the tile into shared memory (the stages',
 *               consumed by then), stored by TMA: one block per tile, unsplit; N a multiple of 4
 *   8  sq-tma   the same for version 4
 *   9  wide-pair version 3 in clusters of two blocks (MONOSEMANTIC_CUDA_WGMMA_PAIR=on): tiles
 *               (n, 2p) and (n, 2p + 1) share B, each block loading half of it and TMA multicasting
 *               it to both, so a block moves 32 KB a stage instead of 48 (NOTES: at long K the
 *               wide tile's time is its operand bytes at about 7 TB/s)
 *   0  cublas   cublasGemmEx, CUBLAS_COMPUTE_32F (reference and ceiling)
 *
 * Build (here or on the GPU machine):  bash bench/kernels/build.sh   -> build/kernels/gemm_bf16
 * Run:  build/kernels/gemm_bf16 [--check] [--time | --time-lm] [--iters 20] [--peak-tflops 989]
 *       [--cublas /path/to/libcublas.so.13] [--only TEXT] [--versions 3,4]
 *   --time-lm: the language models' products only; --only: the timed products whose name holds
 *   TEXT; --versions: those versions only (e.g. one kernel under a profiler).
 * The timing sweep runs the five products of the SAE step at the shapes of bench/kernels/
 * SAE-STEP-FLOOR.md, then the paper's language model's logits product and the unembedding's two
 * gradients and GPT-2 small's five forward products, and prints ms (median of --iters after warm-up, CUDA events), TFLOP/s, the
 * fraction of cuBLAS on the same product and of the bf16 peak given.
 */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/common.cuh"
#include "cuda/gemm.cuh"
#include "cuda/gemm_wgmma.cuh"
#include "cuda/gemm_wgmma_kernel.cuh"
#include "cuda/gemm_wgmma_layout.h"

using bf16 = __nv_bfloat16;

#define CHECK_CUDA(expr)                                                                   \
  do {                                                                                     \
    cudaError_t e_ = (expr);                                                               \
    if (e_ != cudaSuccess) {                                                               \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_)); \
      std::exit(1);                                                                        \
    }                                                                                      \
  } while (0)

// ---- cuBLAS, loaded at run time (prototypes of the few entry points used) --------------------

struct Cublas {
  using Create = int (*)(void**);
  using SetStream = int (*)(void*, cudaStream_t);
  using GemmEx = int (*)(void*, int, int, int, int, int, const void*, const void*, int, int, const void*, int,
                         int, const void*, void*, int, int, int, int);
  void* handle = nullptr;
  GemmEx gemm_ex = nullptr;

  bool load(const char* path, cudaStream_t stream) {
    const char* candidates[] = {path, "libcublas.so.13", "libcublas.so.12", "libcublas.so"};
    void* lib = nullptr;
    for (const char* c : candidates)
      if (c && (lib = dlopen(c, RTLD_NOW | RTLD_LOCAL))) break;
    if (!lib) return false;
    auto create = reinterpret_cast<Create>(dlsym(lib, "cublasCreate_v2"));
    auto set_stream = reinterpret_cast<SetStream>(dlsym(lib, "cublasSetStream_v2"));
    gemm_ex = reinterpret_cast<GemmEx>(dlsym(lib, "cublasGemmEx"));
    if (!create || !set_stream || !gemm_ex || create(&handle) != 0) return false;
    return set_stream(handle, stream) == 0;
  }

  // Row-major C [M, N] = op(A) op(B) is column-major C^T = op(B)^T op(A)^T.
  int gemm(bool ta, bool tb, int M, int N, int K, const bf16* A, int lda, const bf16* B, int ldb, float* C,
           int ldc) const {
    const float one = 1.0f, zero = 0.0f;
    constexpr int kOpN = 0, kOpT = 1, kCompute32F = 68, kAlgoDefault = -1;
    return gemm_ex(handle, tb ? kOpT : kOpN, ta ? kOpT : kOpN, N, M, K, &one, B, CUDA_R_16BF, ldb, A,
                   CUDA_R_16BF, lda, &zero, C, CUDA_R_32F, ldc, kCompute32F, kAlgoDefault);
  }
};

// ---- data -------------------------------------------------------------------------------------

// v[i] = bf16 of a hash-based value in [-1, 1) (never all zeros).
static __global__ void fill_kernel(bf16* v, size_t count, unsigned int seed) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += size_t(gridDim.x) * blockDim.x) {
    unsigned int h = static_cast<unsigned int>(i) * 2654435761u ^ seed * 0x9e3779b9u;
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    v[i] = __float2bfloat16_rn(float(h & 0xffffff) / float(1 << 23) - 1.0f);
  }
}

struct Problem {
  bool ta, tb;
  int M, N, K;
  const char* name;
};

struct Buffers {
  bf16 *A = nullptr, *B = nullptr;
  float* C = nullptr;
  int lda, ldb;
  explicit Buffers(const Problem& p, unsigned int seed) {
    const size_t a_count = size_t(p.M) * p.K, b_count = size_t(p.K) * p.N;
    lda = p.ta ? p.M : p.K;  // storage row length: A [K, M] when transposed, else [M, K]
    ldb = p.tb ? p.K : p.N;  // B [N, K] when transposed, else [K, N]
    CHECK_CUDA(cudaMalloc(&A, a_count * sizeof(bf16)));
    CHECK_CUDA(cudaMalloc(&B, b_count * sizeof(bf16)));
    CHECK_CUDA(cudaMalloc(&C, size_t(p.M) * p.N * sizeof(float)));
    fill_kernel<<<1024, 256>>>(A, a_count, seed);
    fill_kernel<<<1024, 256>>>(B, b_count, seed + 1);
    CHECK_CUDA(cudaDeviceSynchronize());
  }
  ~Buffers() {
    cudaFree(A);
    cudaFree(B);
    cudaFree(C);
  }
};

enum Version {
  kCublas = 0,
  kSimple = 1,
  kTensor = 2,
  kWgmma = 3,
  kSquare = 4,
  kWideNoStore = 5,
  kSquareNoStore = 6,
  kWideTma = 7,
  kSquareTma = 8,
  kWidePair = 9
};
constexpr int kLastVersion = kWidePair;
static const char* version_name(int v) {
  static const char* const names[] = {"cublas", "simple", "tensor", "wgmma", "square", "wide-ns", "sq-ns", "wide-tma", "sq-tma", "wide-pair"};
  return names[v];
}
static bool writes_c(int v) { return v != kWideNoStore && v != kSquareNoStore; }
static bool own_epilogue(int v) { return v >= kWideNoStore && v <= kSquareTma; }

// Whether version v takes the product (the wgmma versions: not TT; rows 16-byte aligned; the TMA
// store: C's rows 16-byte aligned too).
static bool applies(int v, const Problem& p) {
  if (v < kWgmma) return true;
  const int lda = p.ta ? p.M : p.K, ldb = p.tb ? p.K : p.N;
  return !(p.ta && p.tb) && lda % 8 == 0 && ldb % 8 == 0 && (!(v == kWideTma || v == kSquareTma) || p.N % 4 == 0);
}

// The Hopper kernel's epilogue for versions 5 and 6: it writes only a NaN product (which the
// operands never make), so the kernel loads and multiplies as version 3 or 4 and stores nothing.
struct NoStoreOp {
  static constexpr bool kColumnSums = false;
  static constexpr bool kReadsMask = false;
  float* sink;
  __device__ __forceinline__ unsigned live(int, int, bool) const { return 0; }
  __device__ __forceinline__ float2 operator()(int, int, int, float v0, float v1, bool, unsigned) const {
    if (v0 != v0 || v1 != v1) *sink = v0 + v1;
    return make_float2(0.0f, 0.0f);
  }
  __device__ __forceinline__ bool columns() const { return false; }
  __device__ __forceinline__ double* partial() const { return nullptr; }
  __device__ __forceinline__ int32_t* fired() const { return nullptr; }
};

// Versions 7 and 8: the tile stored by TMA (the kernel's StoresByTma path; C [M, N] in fp32).
struct TmaStoreOp {
  static constexpr bool kTmaStore = true;
  static constexpr bool kColumnSums = false;
  static constexpr bool kReadsMask = false;
  float* C;
  int ldc;
  __device__ __forceinline__ unsigned live(int, int, bool) const { return 0; }
  __device__ __forceinline__ float2 operator()(int, int, int, float, float, bool, unsigned) const { return make_float2(0.0f, 0.0f); }
  __device__ __forceinline__ bool columns() const { return false; }
  __device__ __forceinline__ double* partial() const { return nullptr; }
  __device__ __forceinline__ int32_t* fired() const { return nullptr; }
};

// Versions 5 to 8 on the Hopper kernel with the playground's epilogues: no stores split as the
// store would be (5, 6), or the tile stored by TMA, unsplit (7, 8).
template <typename Epi>
static int run_kernel(int bn, const Epi& epi, int splits, ms::cuda::Op& op, const Problem& p, const Buffers& b) {
  if (!p.ta && p.tb) return ms::cuda::launch_tile<false, false>(bn, op, p.M, p.N, p.K, b.A, b.lda, b.B, b.ldb, epi, splits);
  if (!p.ta) return ms::cuda::launch_tile<false, true>(bn, op, p.M, p.N, p.K, b.A, b.lda, b.B, b.ldb, epi, splits);
  return ms::cuda::launch_tile<true, true>(bn, op, p.M, p.N, p.K, b.A, b.lda, b.B, b.ldb, epi, splits);
}
static int run_own_epilogue(int v, ms::cuda::Op& op, const Problem& p, const Buffers& b) {
  namespace L = ms::cuda::wgmma_layout;
  const int bn = v == kSquareNoStore || v == kSquareTma ? L::kSquareBN : L::kBN;
  if (v == kWideTma || v == kSquareTma) return run_kernel(bn, TmaStoreOp{b.C, p.N}, 1, op, p, b);
  const long long tiles = (long long)((p.M + L::kBM - 1) / L::kBM) * ((p.N + bn - 1) / bn);
  const int splits = L::split_count(tiles, (p.K + L::kBK - 1) / L::kBK, ms::cuda::slots(bn));
  return run_kernel(bn, NoStoreOp{b.C}, splits, op, p, b);
}

static int run_version(int v, const Cublas& cublas, ms::cuda::Op& op, const Problem& p, const Buffers& b) {
  if (v == kCublas) return cublas.gemm(p.ta, p.tb, p.M, p.N, p.K, b.A, b.lda, b.B, b.ldb, b.C, p.N);
  // Pairs of wide tiles sharing B for version 9 only (the other Hopper versions run unpaired).
  if (v == kWidePair) setenv("MONOSEMANTIC_CUDA_WGMMA_PAIR", "on", 1);
  else unsetenv("MONOSEMANTIC_CUDA_WGMMA_PAIR");
  if (own_epilogue(v)) return run_own_epilogue(v, op, p, b);
  if (v == kWgmma || v == kSquare || v == kWidePair) {
    setenv("MONOSEMANTIC_CUDA_WGMMA_TILE", v == kSquare ? "128" : "256", 1);
    return ms::cuda::gemm_wgmma(op, p.ta, p.tb, p.M, p.N, p.K, b.A, b.lda, b.B, b.ldb,
                                ms::cuda::EpilogueStore{1.0f, 0.0f, b.C, p.N});
  }
  setenv("MONOSEMANTIC_CUDA_GEMM", "mma", 1);  // the tensor version is mma.sync's (auto sends long-K products to wgmma on Hopper)
  if (v == kSimple) setenv("MONOSEMANTIC_CUDA_KERNELS", "simple", 1);
  else unsetenv("MONOSEMANTIC_CUDA_KERNELS");
  return ms::cuda::gemm<bf16>(op, p.ta, p.tb, p.M, p.N, p.K, 1.0f, b.A, b.lda, b.B, b.ldb, 0.0f, b.C, p.N);
}

// ---- correctness ------------------------------------------------------------------------------

static float bf16_to_float_host(bf16 v) {
  unsigned short bits;
  std::memcpy(&bits, &v, sizeof bits);
  const unsigned int u = static_cast<unsigned int>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Worst |C - ref| / sum_k |a||b| over all outputs (float64 reference on the host).
static double check_one(int v, const Cublas& cublas, ms::cuda::Op& op, const Problem& p) {
  Buffers b(p, 7u + p.M * 31u + p.N * 17u + p.K);
  CHECK_CUDA(cudaMemset(b.C, 0xff, size_t(p.M) * p.N * sizeof(float)));  // NaN poison
  if (run_version(v, cublas, op, p, b) != 0) return INFINITY;
  CHECK_CUDA(cudaStreamSynchronize(op.stream));
  std::vector<bf16> hA(size_t(p.M) * p.K), hB(size_t(p.K) * p.N);
  std::vector<float> hC(size_t(p.M) * p.N);
  CHECK_CUDA(cudaMemcpy(hA.data(), b.A, hA.size() * sizeof(bf16), cudaMemcpyDeviceToHost));
  CHECK_CUDA(cudaMemcpy(hB.data(), b.B, hB.size() * sizeof(bf16), cudaMemcpyDeviceToHost));
  CHECK_CUDA(cudaMemcpy(hC.data(), b.C, hC.size() * sizeof(float), cudaMemcpyDeviceToHost));
  double worst = 0.0;
  for (int m = 0; m < p.M; ++m)
    for (int n = 0; n < p.N; ++n) {
      double acc = 0.0, scale = 0.0;
      for (int k = 0; k < p.K; ++k) {
        const double a = bf16_to_float_host(p.ta ? hA[size_t(k) * b.lda + m] : hA[size_t(m) * b.lda + k]);
        const double bb = bf16_to_float_host(p.tb ? hB[size_t(n) * b.ldb + k] : hB[size_t(k) * b.ldb + n]);
        acc += a * bb;
        scale += std::fabs(a * bb);
      }
      const double got = hC[size_t(m) * p.N + n];
      const double err = std::isfinite(got) ? std::fabs(got - acc) / (scale > 0 ? scale : 1.0) : INFINITY;
      worst = std::max(worst, err);
    }
  return worst;
}

// ---- timing -----------------------------------------------------------------------------------

static double time_one(int v, const Cublas& cublas, ms::cuda::Op& op, const Problem& p, int iters) {
  Buffers b(p, 11u);
  for (int w = 0; w < 3; ++w)
    if (run_version(v, cublas, op, p, b) != 0) return NAN;
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  std::vector<float> ms(iters);
  for (int i = 0; i < iters; ++i) {
    CHECK_CUDA(cudaEventRecord(start, op.stream));
    run_version(v, cublas, op, p, b);
    CHECK_CUDA(cudaEventRecord(stop, op.stream));
    CHECK_CUDA(cudaEventSynchronize(stop));
    CHECK_CUDA(cudaEventElapsedTime(&ms[i], start, stop));
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return ms[iters / 2];
}

int main(int argc, char** argv) {
  bool do_check = false, do_time = false, do_time_lm = false;
  int iters = 20;
  double peak = 989.0;  // H100 SXM dense bf16, spec; pass the measured one
  const char* cublas_path = nullptr;
  std::string only;                  // timed products whose name holds this
  bool version_on[kLastVersion + 1];  // the versions run
  std::fill(version_on, version_on + kLastVersion + 1, true);
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--check") do_check = true;
    else if (a == "--time") do_time = do_time_lm = true;
    else if (a == "--time-lm") do_time_lm = true;
    else if (a == "--iters" && i + 1 < argc) iters = std::atoi(argv[++i]);
    else if (a == "--peak-tflops" && i + 1 < argc) peak = std::atof(argv[++i]);
    else if (a == "--cublas" && i + 1 < argc) cublas_path = argv[++i];
    else if (a == "--only" && i + 1 < argc) only = argv[++i];
    else if (a == "--versions" && i + 1 < argc) {
      std::fill(version_on, version_on + kLastVersion + 1, false);
      for (const char* c = argv[++i]; *c; ++c)
        if (*c >= '0' && *c <= '0' + kLastVersion) version_on[*c - '0'] = true;
    } else {
      std::fprintf(stderr,
                   "usage: gemm_bf16 [--check] [--time | --time-lm] [--iters N] [--peak-tflops T] [--cublas PATH] "
                   "[--only TEXT] [--versions LIST]\n");
      return 2;
    }
  }
  if (!do_check && !do_time && !do_time_lm) do_check = do_time = do_time_lm = true;

  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  ms_error err{};
  ms::cuda::Op op;
  op.err = &err;
  op.name = "gemm_bf16";
  op.stream = stream;
  // Split-K products take scratch from the stream-ordered pool, as in the library (no cudaMalloc
  // and cudaFree, which waits for the device, inside the timed products).
  ms::cuda::state().pool = ms::cuda::open_memory_pool(0);
  Cublas cublas;
  const bool have_cublas = cublas.load(cublas_path, stream);
  std::printf("cuBLAS: %s\n", have_cublas ? "loaded" : "not found (pass --cublas PATH)");
  const int first = have_cublas ? kCublas : kSimple;
  int failures = 0;

  if (do_check) {
    // Ragged and whole-tile shapes, the storage orders the step uses: NN, TN, NT (TT goes to the
    // simple kernel). Tolerance: fp32 accumulation.
    // Leading dimensions multiples of 8 where the wgmma versions apply; ragged M, N and K around their
    // 128 x 256 x 64 and 128 x 128 x 64 tiles (264 x 296 x 136 in every order: rows and columns
    // clipped by the TMA-stored versions too).
    const int dims[][3] = {{1, 1, 1},       {17, 9, 33},     {128, 128, 32},  {129, 130, 31}, {300, 257, 77},
                           {64, 515, 264},  {257, 96, 1030}, {1, 1, 8},       {128, 256, 64}, {129, 257, 72},
                           {300, 513, 200}, {640, 300, 1032}, {264, 296, 136}};
    std::printf("\ncorrectness: worst |C - C64| / sum|a b| (tolerance 1e-5)\n");
    std::printf("%-22s %-5s", "M x N x K", "op");
    for (int v = kCublas; v <= kLastVersion; ++v)
      if (writes_c(v)) std::printf(" %10s", version_name(v));
    std::printf("\n");
    for (const auto& dm : dims)
      for (int t = 0; t < 3; ++t) {
        const Problem p{(t & 1) != 0, (t & 2) != 0, dm[0], dm[1], dm[2], ""};
        char shape[64];
        std::snprintf(shape, sizeof shape, "%d x %d x %d", p.M, p.N, p.K);
        std::printf("%-22s %c%c    ", shape, p.ta ? 'T' : 'N', p.tb ? 'T' : 'N');
        for (int v = kCublas; v <= kLastVersion; ++v) {
          if (!writes_c(v)) continue;
          if (v < first || !applies(v, p)) {
            std::printf(" %10s", "-");
            continue;
          }
          const double e = check_one(v, cublas, op, p);
          if (v != kCublas && !(e < 1e-5)) ++failures;
          std::printf(" %10.2e", e);
        }
        std::printf("\n");
      }
  }

  if (do_time) {
    // The five products of the SAE step (bench/kernels/SAE-STEP-FLOOR.md), (d, n, B).
    const int shapes[][3] = {{512, 16384, 4096}, {512, 131072, 4096}, {768, 24576, 4096}};
    std::printf("\ntiming: median ms of %d, TFLOP/s, fraction of cuBLAS and of %.0f TFLOP/s\n", iters, peak);
    std::printf("%-20s %-28s %-7s %9s %9s %8s %8s\n", "(d, n, B)", "product", "version", "ms", "TFLOP/s", "vs cuBLAS", "of peak");
    for (const auto& s : shapes) {
      const int d = s[0], n = s[1], B = s[2];
      const Problem products[] = {
          {false, false, B, n, d, "f = xc W_enc"},
          {false, false, B, d, n, "xhat = f W_dec"},
          {true, false, n, d, B, "dW_dec = f^T g"},
          {false, true, B, n, d, "gp = g W_dec^T"},
          {true, false, d, n, B, "dW_enc = xc^T gp"},
          {false, true, 8192, 8192, 8192, "8192^3 NT (peak shape)"},
      };
      char shape[40];
      std::snprintf(shape, sizeof shape, "(%d, %d, %d)", d, n, B);
      for (const auto& p : products) {
        if (std::string(p.name).find(only) == std::string::npos) continue;
        double ref_ms = NAN;
        for (int v = first; v <= kLastVersion; ++v) {
          if (!applies(v, p) || !version_on[v]) continue;
          if (v == kSimple && (n > 16384 || p.K == 8192)) continue;  // the simple kernel is minutes per sweep there
          const double t = time_one(v, cublas, op, p, iters);
          if (v == kCublas) ref_ms = t;
          const double tflops = 2.0 * p.M * p.N * double(p.K) / (t * 1e-3) / 1e12;
          std::printf("%-20s %-28s %-7s %9.3f %9.1f %8.2f %8.2f\n", shape, p.name, version_name(v), t, tflops,
                      ref_ms / t, tflops / peak);
        }
      }
    }
  }
  if (do_time_lm) {
    // The paper's model at d_model 128, vocabulary 8,192, B 64 x T 1,024: the logits (K = 128: the
    // short-K kernel in the tensor version) and the unembedding's two gradients (N = 128); then
    // GPT-2 small's forward products at B 16 x T 1,024 (K = 768 and 3,072).
    const Problem lm[] = {
        {false, true, 65536, 8192, 128, "logits = x W^T"},
        {false, false, 65536, 128, 8192, "dx = dlogits W"},
        {true, false, 8192, 128, 65536, "dW = dlogits^T x"},
        {false, false, 16384, 2304, 768, "gpt2 qkv = x W_attn"},
        {false, false, 16384, 768, 768, "gpt2 attn out = z W_proj"},
        {false, false, 16384, 3072, 768, "gpt2 mlp in = x W_fc"},
        {false, false, 16384, 768, 3072, "gpt2 mlp out = h W_proj"},
        {false, true, 16384, 50257, 768, "gpt2 logits = x W_te^T"},
    };
    std::printf("\nlanguage models (paper's: d_model 128, V 8192, 65,536 tokens; GPT-2 small: 16,384 tokens): median ms of %d\n", iters);
    for (const auto& p : lm) {
      if (std::string(p.name).find(only) == std::string::npos) continue;
      double ref_ms = NAN;
      for (int v = first; v <= kLastVersion; ++v) {
        if (!applies(v, p) || v == kSimple || !version_on[v]) continue;
        const double t = time_one(v, cublas, op, p, iters);
        if (v == kCublas) ref_ms = t;
        const double tflops = 2.0 * p.M * p.N * double(p.K) / (t * 1e-3) / 1e12;
        std::printf("%-20s %-28s %-7s %9.3f %9.1f %8.2f %8.2f\n", "LM", p.name, version_name(v), t, tflops, ref_ms / t,
                    tflops / peak);
      }
    }
  }
  if (err.code != 0) std::printf("last error: %s\n", err.message);
  std::printf("\n%s\n", failures ? "FAILED" : "ok");
  return failures ? 1 : 0;
}
