/*
 * adam.cu — adam_update (adam.cuh): a grid-stride loop over count elements (size_t: arrays of
 * more than 2^31 elements are fine), one thread per element per pass.
 */
#include "adam.cuh"

namespace ms::cuda {

static __global__ void adam_kernel(size_t count, float* __restrict__ param, const float* __restrict__ grad,
                                   float* __restrict__ m, float* __restrict__ v, AdamConsts c) {
  for (size_t k = size_t(blockIdx.x) * blockDim.x + threadIdx.x; k < count;
       k += size_t(gridDim.x) * blockDim.x) {
    float mk = m[k], vk = v[k];
    param[k] = adam_element(param[k], grad[k], mk, vk, c);
    m[k] = mk;
    v[k] = vk;
  }
}

int launch_adam(const Op& op, size_t count, float* param, const float* grad, float* m, float* v,
                const AdamConsts& c) {
  if (count == 0) return MS_OK;
  adam_kernel<<<grid_stride_blocks(count), kThreads, 0, op.stream>>>(count, param, grad, m, v, c);
  return check_launch(op, "adam_kernel");
}

int adam_update(size_t count, float* param, const float* grad, float* m, float* v,
                const ms_adam_hparams* hp, ms_error* err) {
  const char* name = "adam_update";
  if (!hp) return invalid(err, name, "hp is null");
  if (count == 0) return MS_OK;
  if (!param) return invalid(err, name, "param is null");
  if (!grad) return invalid(err, name, "grad is null");
  if (!m) return invalid(err, name, "m is null");
  if (!v) return invalid(err, name, "v is null");
  Op op;
  MS_TRY(begin(op, err, name));
  MS_TRY(launch_adam(op, count, param, grad, m, v, adam_consts(*hp)));
  return finish(op);
}

}  // namespace ms::cuda
