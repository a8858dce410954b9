/** monosemantic: sparse autoencoders on native CPU and CUDA backends. */
export { MonosemanticError, type ErrorCode } from './errors.js';
export { backendStatus, resolveBackend, type BackendName, type BackendRequest, type BackendStatus } from './backend.js';
export { Tensor, type DType, type TensorOptions } from './tensor.js';
export { Rng } from './random.js';
export { doctorReport, formatDoctorReport, type DoctorReport } from './doctor.js';
export { SparseAutoencoder, type StepStats, type SaeTensors } from './sae/sae.js';
export { DEFAULTS as SAE_DEFAULTS, type SaeOptions, type Hyperparameters, type Penalty, type Precision, type EncoderInit } from './sae/config.js';
export { geometricMedian } from './sae/geometric-median.js';
export type { SaeParameterArrays } from './sae/init.js';
