#!/usr/bin/env bash
# Builds the kernel playgrounds of bench/kernels (gemm_bf16, decoder_update) into build/kernels/
# (nvcc; cudart static, so the binaries need only the NVIDIA driver). NVCC and ARCH override the
# compiler and the update playground's target; the GEMM playground is built for sm_90a (Hopper).
set -euo pipefail
cd "$(dirname "$0")/../.."
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
arch=${ARCH:-sm_90}
mkdir -p build/kernels
# The GEMM playground's wgmma version needs sm_90a (the -gencode form: nvcc 13.0's -arch=sm_90a also
# runs a plain sm_90 pass that rejects wgmma).
"$nvcc" -std=c++17 -O3 -lineinfo -gencode=arch=compute_90a,code=sm_90a -Inative \
  bench/kernels/gemm_bf16.cu native/cuda/gemm.cu native/cuda/gemm_tensor.cu native/cuda/gemm_wgmma.cu native/cuda/common.cu \
  -o build/kernels/gemm_bf16 -ldl
# The update playground goes through the CUDA backend's table, so it links the whole backend.
"$nvcc" -std=c++17 -O3 -lineinfo -arch="$arch" -Inative bench/kernels/decoder_update.cu native/cuda/*.cu \
  -o build/kernels/decoder_update
echo "built build/kernels/gemm_bf16 and build/kernels/decoder_update ($arch)"
