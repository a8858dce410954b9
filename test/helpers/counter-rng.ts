/** A BigInt copy of native/counter_rng.h, to predict the native sampling keys exactly. */
const MASK = (1n << 64n) - 1n;

function mix64(z: bigint): bigint {
  z = (z + 0x9e3779b97f4a7c15n) & MASK;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK;
  return z ^ (z >> 31n);
}

/** ms_uniform_open(seed, index): uniform in (0, 1). */
export function uniformOpen(seed: number, index: number): number {
  const h = mix64(mix64(BigInt(seed)) ^ BigInt(index));
  return (Number(h >> 11n) + 0.5) * 2 ** -53;
}

/** The sampling key of input `index` with per-input loss `loss` (as float32). */
export function sampleKey(seed: number, index: number, loss: number): number {
  const w = loss * loss;
  if (!(w > 0)) return Number.NEGATIVE_INFINITY;
  return Math.fround(Math.log(uniformOpen(seed, index)) / w);
}
