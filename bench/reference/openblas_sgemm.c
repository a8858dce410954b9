/*
 * openblas_sgemm.c — reference timing of OpenBLAS sgemm for one shape, for the benchmark runner.
 *
 * Build: cc -O2 -o build/openblas_sgemm bench/reference/openblas_sgemm.c -lopenblas
 * Usage: openblas_sgemm M N K transA transB reps       (transA/transB: 0|1, or N|T)
 *   Row-major C[M,N] = op(A)[M,K] * op(B)[K,N]; A is stored [M,K] (transA=0) or [K,M] (transA=1),
 *   B is stored [K,N] (transB=0) or [N,K] (transB=1), all with packed rows. Inputs are uniform in
 *   [-1,-0.5] U [0.5,1] (never zero, so no sparsity shortcut helps). One untimed warm-up call,
 *   then `reps` timed calls; threads as OpenBLAS decides (OPENBLAS_NUM_THREADS).
 * Output: one line of JSON, e.g.
 *   {"impl":"openblas","M":1024,"N":4096,"K":512,"transA":0,"transB":0,"reps":20,"threads":2,
 *    "median_ms":23.1,"min_ms":22.8,"gflops":185.9}
 *   gflops = 2*M*N*K / median time.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_double(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

/* 0|1|N|T|n|t -> 0 or 1; -1 if invalid. */
static int parse_trans(const char* s) {
  if (!strcmp(s, "0") || !strcmp(s, "N") || !strcmp(s, "n")) return 0;
  if (!strcmp(s, "1") || !strcmp(s, "T") || !strcmp(s, "t")) return 1;
  return -1;
}

/* Fills x[0:n] with values uniform in [-1,-0.5] U [0.5,1] (xorshift, fixed seed). */
static void fill(float* x, size_t n, unsigned seed) {
  unsigned s = seed * 2654435761u + 1u;
  for (size_t i = 0; i < n; ++i) {
    s ^= s << 13;
    s ^= s >> 17;
    s ^= s << 5;
    const float u = (s >> 8) * (1.0f / 16777216.0f); /* [0, 1) */
    x[i] = (u < 0.5f) ? -(0.5f + u) : u;            /* [-1,-0.5) U [0.5,1) */
  }
}

int main(int argc, char** argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: %s M N K transA transB reps\n", argv[0]);
    return 2;
  }
  const int M = atoi(argv[1]), N = atoi(argv[2]), K = atoi(argv[3]);
  const int ta = parse_trans(argv[4]), tb = parse_trans(argv[5]);
  const int reps = atoi(argv[6]);
  if (M <= 0 || N <= 0 || K <= 0 || ta < 0 || tb < 0 || reps <= 0) {
    fprintf(stderr, "invalid arguments: M N K must be > 0, trans 0|1|N|T, reps > 0\n");
    return 2;
  }
  float* A = malloc(sizeof(float) * (size_t)M * K); /* [M,K] or [K,M] */
  float* B = malloc(sizeof(float) * (size_t)K * N); /* [K,N] or [N,K] */
  float* C = malloc(sizeof(float) * (size_t)M * N); /* [M,N] */
  double* times = malloc(sizeof(double) * reps);
  if (!A || !B || !C || !times) {
    fprintf(stderr, "out of memory\n");
    return 1;
  }
  fill(A, (size_t)M * K, 1);
  fill(B, (size_t)K * N, 2);
  memset(C, 0, sizeof(float) * (size_t)M * N);
  const int lda = ta ? M : K, ldb = tb ? K : N, ldc = N;
  const enum CBLAS_TRANSPOSE opa = ta ? CblasTrans : CblasNoTrans, opb = tb ? CblasTrans : CblasNoTrans;

  cblas_sgemm(CblasRowMajor, opa, opb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc); /* warm-up */
  for (int r = 0; r < reps; ++r) {
    const double t0 = now_ms();
    cblas_sgemm(CblasRowMajor, opa, opb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
    times[r] = now_ms() - t0;
  }
  qsort(times, reps, sizeof(double), cmp_double);
  const double median = reps % 2 ? times[reps / 2] : 0.5 * (times[reps / 2 - 1] + times[reps / 2]);
  const double gflops = 2.0 * M * N * K / (median * 1e6);
  printf("{\"impl\":\"openblas\",\"M\":%d,\"N\":%d,\"K\":%d,\"transA\":%d,\"transB\":%d,\"reps\":%d,"
         "\"threads\":%d,\"median_ms\":%.4f,\"min_ms\":%.4f,\"gflops\":%.2f}\n",
         M, N, K, ta, tb, reps, openblas_get_num_threads(), median, times[0], gflops);
  free(A);
  free(B);
  free(C);
  free(times);
  return 0;
}
