/*
 * analysis.cu — sparse_rows and column_stats (analysis.cuh).
 *
 * The analysis commands read every feature of every token once; with 131,072 features a batch of
 * activations is gigabytes, while the entries that fire are a few hundred per token. These ops
 * make the dense pass on the device and send the host only what it needs.
 *
 * sparse_rows: one block per row counts the row's entries above the threshold; the host turns the
 * counts into row offsets (rows are few, the counts come back anyway); then one block per row
 * writes the row's entries in column order: per tile of blockDim columns, a warp ballot gives each
 * kept entry its rank in the warp, and the per-warp counts in shared memory its warp's offset.
 * column_stats: blocks of 32 columns × 8 row lanes walk a chunk of rows each (a warp reads 32
 * consecutive columns of one row: coalesced), reduce the 8 lanes in a fixed order and write one
 * double partial per chunk; a second kernel adds the chunks in order. Fixed shapes and orders
 * make the result deterministic for given sizes.
 */
#include "analysis.cuh"

#include <new>
#include <vector>

namespace ms::cuda {
namespace {

constexpr int kColumnTile = 32;  // columns per column_stats block (one warp's width)
constexpr int kRowLanes = 8;     // row lanes per column_stats block
constexpr int kMaxChunks = 1024; // row chunks at most (partials are [chunks, 3, n])

// count[r] = #{j : x[r, j] > threshold}; block r (grid-stride over rows).
__global__ void __launch_bounds__(kThreads)
    row_count_kernel(int rows, int n, const float* __restrict__ x, float threshold, int* __restrict__ count) {
  __shared__ int scratch[33];
  for (int r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = x + size_t(r) * n;  // x[r, :]
    int c = 0;
    for (int j = threadIdx.x; j < n; j += blockDim.x) c += xr[j] > threshold;
    c = block_sum(c, scratch);
    if (threadIdx.x == 0) count[r] = c;
  }
}

// For k in [row_ptr[r], row_ptr[r + 1]): cols[k], vals[k] = the row's entries above the threshold
// in column order; block r (grid-stride over rows).
__global__ void __launch_bounds__(kThreads)
    row_fill_kernel(int rows, int n, const float* __restrict__ x, float threshold, const long long* __restrict__ row_ptr,
                    int32_t* __restrict__ cols, float* __restrict__ vals) {
  __shared__ int warp_kept[kThreads / 32];  // entries kept by each warp in the current tile
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
  for (int r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = x + size_t(r) * n;  // x[r, :]
    long long next = row_ptr[r];          // where this tile's first kept entry goes
    for (int j0 = 0; j0 < n; j0 += blockDim.x) {
      const int j = j0 + threadIdx.x;
      const float v = j < n ? xr[j] : 0.0f;
      const bool keep = j < n && v > threshold;
      const unsigned int kept = __ballot_sync(0xffffffffu, keep);
      if (lane == 0) warp_kept[warp] = __popc(kept);
      __syncthreads();
      int before = 0, total = 0;  // kept by warps 0 .. warp-1, and by the whole block
      for (int w = 0; w < warps; ++w) {
        if (w < warp) before += warp_kept[w];
        total += warp_kept[w];
      }
      if (keep) {
        const long long k = next + before + __popc(kept & ((1u << lane) - 1u));  // rank among kept entries
        cols[k] = j;
        vals[k] = v;
      }
      next += total;
      __syncthreads();  // warp_kept is rewritten by the next tile
    }
  }
}

// partial[chunk, s, j] (s = 0: sum, 1: sum of squares, 2: nonzero count) over rows
// [chunk * chunk_rows, (chunk + 1) * chunk_rows) of column j; block (column tile, chunk), threads (32, 8).
__global__ void __launch_bounds__(kColumnTile * kRowLanes)
    column_partial_kernel(int rows, int n, int chunk_rows, const float* __restrict__ x, double* __restrict__ partial) {
  __shared__ double lanes[3][kRowLanes][kColumnTile];
  const int j = blockIdx.x * kColumnTile + threadIdx.x;
  const int r0 = blockIdx.y * chunk_rows;
  const int r1 = min(rows, r0 + chunk_rows);
  double s = 0.0, s2 = 0.0, nz = 0.0;
  if (j < n) {
    for (int r = r0 + threadIdx.y; r < r1; r += kRowLanes) {
      const double v = x[size_t(r) * n + j];  // x[r, j]
      s += v;
      s2 += v * v;
      nz += v != 0.0;
    }
  }
  lanes[0][threadIdx.y][threadIdx.x] = s;
  lanes[1][threadIdx.y][threadIdx.x] = s2;
  lanes[2][threadIdx.y][threadIdx.x] = nz;
  __syncthreads();
  if (threadIdx.y < 3 && j < n) {
    const int stat = threadIdx.y;
    double t = 0.0;
    for (int l = 0; l < kRowLanes; ++l) t += lanes[stat][l][threadIdx.x];
    partial[(size_t(blockIdx.y) * 3 + stat) * n + j] = t;  // partial[chunk, stat, j]
  }
}

// total[s, j] = sum over chunks of partial[chunk, s, j], in chunk order.
__global__ void column_total_kernel(int n, int chunks, const double* __restrict__ partial, double* __restrict__ total) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < size_t(3) * n; i += size_t(gridDim.x) * blockDim.x) {
    double t = 0.0;
    for (int c = 0; c < chunks; ++c) t += partial[size_t(c) * 3 * n + i];  // partial[c, i / n, i % n]
    total[i] = t;
  }
}

unsigned int row_blocks(int rows) { return rows < 65535 ? static_cast<unsigned int>(rows) : 65535u; }

}  // namespace

int sparse_rows(int rows, int n, const float* x, float threshold, int64_t* row_ptr_host, size_t capacity,
                int32_t* cols_host, float* vals_host, ms_error* err) {
  const char* name = "sparse_rows";
  if (rows < 0 || n <= 0) return invalid(err, name, "bad shape [%d, %d]", rows, n);
  if (!row_ptr_host) return invalid(err, name, "row_ptr is null");
  row_ptr_host[0] = 0;
  if (rows == 0) return MS_OK;
  if (!x) return invalid(err, name, "x is null");
  Op op;
  MS_TRY(begin(op, err, name));
  DeviceScratch counts;  // count[rows]
  MS_TRY(counts.allocate(op, size_t(rows) * sizeof(int)));
  row_count_kernel<<<row_blocks(rows), kThreads, 0, op.stream>>>(rows, n, x, threshold, static_cast<int*>(counts.get()));
  MS_TRY(check_launch(op, "row_count_kernel"));
  std::vector<int> count;
  try {
    count.resize(static_cast<size_t>(rows));
  } catch (const std::bad_alloc&) {
    return set_error(err, MS_ERR_OOM, 0, name, "no host memory for %d row counts", rows);
  }
  MS_TRY(check(op, cudaMemcpyAsync(count.data(), counts.get(), size_t(rows) * sizeof(int), cudaMemcpyDeviceToHost, op.stream),
               "cudaMemcpyAsync"));
  MS_TRY(wait_host(op));
  MS_TRY(counts.release(op));
  for (int r = 0; r < rows; ++r) row_ptr_host[r + 1] = row_ptr_host[r] + count[size_t(r)];
  const size_t nnz = size_t(row_ptr_host[rows]);
  if (nnz > capacity || nnz == 0) return MS_OK;
  if (!cols_host || !vals_host) return invalid(err, name, "cols or vals is null");

  Carver measure(nullptr);
  measure.take<long long>(size_t(rows) + 1);
  measure.take<int32_t>(nnz);
  measure.take<float>(nnz);
  DeviceScratch scratch;  // row_ptr[rows + 1] | cols[nnz] | vals[nnz]
  MS_TRY(scratch.allocate(op, measure.used()));
  Carver carve(scratch.get());
  long long* row_ptr = carve.take<long long>(size_t(rows) + 1);
  int32_t* cols = carve.take<int32_t>(nnz);
  float* vals = carve.take<float>(nnz);
  static_assert(sizeof(long long) == sizeof(int64_t), "row offsets are 64-bit");
  MS_TRY(check(op, cudaMemcpyAsync(row_ptr, row_ptr_host, (size_t(rows) + 1) * sizeof(long long), cudaMemcpyHostToDevice, op.stream),
               "cudaMemcpyAsync"));
  row_fill_kernel<<<row_blocks(rows), kThreads, 0, op.stream>>>(rows, n, x, threshold, row_ptr, cols, vals);
  MS_TRY(check_launch(op, "row_fill_kernel"));
  MS_TRY(check(op, cudaMemcpyAsync(cols_host, cols, nnz * sizeof(int32_t), cudaMemcpyDeviceToHost, op.stream), "cudaMemcpyAsync"));
  MS_TRY(check(op, cudaMemcpyAsync(vals_host, vals, nnz * sizeof(float), cudaMemcpyDeviceToHost, op.stream), "cudaMemcpyAsync"));
  MS_TRY(wait_host(op));
  return scratch.release(op);
}

int column_stats(int rows, int n, const float* x, double* sum_host, double* sumsq_host, double* nonzero_host,
                 ms_error* err) {
  const char* name = "column_stats";
  if (rows < 0 || n <= 0) return invalid(err, name, "bad shape [%d, %d]", rows, n);
  if (rows && !x) return invalid(err, name, "x is null");
  const int chunk_rows = rows <= 256 * kMaxChunks ? 256 : (rows + kMaxChunks - 1) / kMaxChunks;
  const int chunks = rows == 0 ? 1 : (rows + chunk_rows - 1) / chunk_rows;
  Op op;
  MS_TRY(begin(op, err, name));
  Carver measure(nullptr);
  measure.take<double>(size_t(chunks) * 3 * n);
  measure.take<double>(size_t(3) * n);
  DeviceScratch scratch;  // partial[chunks, 3, n] | total[3, n]
  MS_TRY(scratch.allocate(op, measure.used()));
  Carver carve(scratch.get());
  double* partial = carve.take<double>(size_t(chunks) * 3 * n);
  double* total = carve.take<double>(size_t(3) * n);
  const dim3 grid(static_cast<unsigned int>((n + kColumnTile - 1) / kColumnTile), static_cast<unsigned int>(chunks));
  column_partial_kernel<<<grid, dim3(kColumnTile, kRowLanes), 0, op.stream>>>(rows, n, chunk_rows, x, partial);
  MS_TRY(check_launch(op, "column_partial_kernel"));
  column_total_kernel<<<grid_stride_blocks(size_t(3) * n), kThreads, 0, op.stream>>>(n, chunks, partial, total);
  MS_TRY(check_launch(op, "column_total_kernel"));
  double* outputs[3] = {sum_host, sumsq_host, nonzero_host};
  for (int s = 0; s < 3; ++s) {
    if (!outputs[s]) continue;
    MS_TRY(check(op, cudaMemcpyAsync(outputs[s], total + size_t(s) * n, size_t(n) * sizeof(double), cudaMemcpyDeviceToHost, op.stream),
                 "cudaMemcpyAsync"));
  }
  MS_TRY(wait_host(op));
  return scratch.release(op);
}

}  // namespace ms::cuda
