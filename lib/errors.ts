/**
 * Errors raised by monosemantic's native layer.
 *
 * Argument problems are plain `TypeError` / `RangeError` naming the argument. Failures inside a
 * backend (out of memory, a CUDA error, a backend that cannot start) are `MonosemanticError`s
 * carrying a machine-readable `code`, the failing `op`, and the backend's own code (e.g. the
 * cudaError_t value) as `deviceCode`.
 */
export type ErrorCode =
  | 'E_INVALID'
  | 'E_OOM'
  | 'E_DEVICE'
  | 'E_UNSUPPORTED'
  | 'E_UNAVAILABLE'
  | 'E_NO_BINARY'
  | 'E_UNKNOWN';

export class MonosemanticError extends Error {
  readonly code: ErrorCode;
  readonly op: string;
  readonly deviceCode: number;

  constructor(code: ErrorCode, op: string, message: string, deviceCode = 0) {
    super(message);
    this.name = 'MonosemanticError';
    this.code = code;
    this.op = op;
    this.deviceCode = deviceCode;
  }
}
