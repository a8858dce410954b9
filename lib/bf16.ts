/** bfloat16 <-> float32 conversion on the host (round to nearest even; NaN stays NaN). */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function float32ToBf16(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    f32[0] = values[i]!;
    const bits = u32[0]!;
    if ((bits & 0x7fffffff) > 0x7f800000) {
      out[i] = (bits >>> 16) | 0x0040; // quiet NaN
    } else {
      out[i] = (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16;
    }
  }
  return out;
}

export function bf16ToFloat32(values: Uint16Array): Float32Array {
  const out = new Float32Array(values.length);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < values.length; i++) bits[i] = values[i]! << 16;
  return out;
}
