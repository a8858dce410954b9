/**
 * The MONOSEMANTIC_* environment variables, in one table: what each accepts and means.
 *
 * The native backends read their own variables (at start, or at each call), and treat a value
 * they do not know as unset. So a typo — `MONOSEMANTIC_SIMD=AVX2`, `MONOSEMANTIC_CUDA_GEMM=wgmm`,
 * `MONOSEMANTIC_THREAD=4` — would silently change nothing. `checkEnvironment` is run when the
 * backends are first loaded: a value a variable does not accept is an error naming the values it
 * does, and an unknown MONOSEMANTIC_* name is a warning naming the closest known one.
 */

export interface EnvironmentSetting {
  name: string;
  /** The accepted values, the default first; null for free-form ones (checked by `check`). */
  values: readonly string[] | null;
  /** For free-form values: what is wrong with `value`, or null when it is accepted. */
  check?: (value: string) => string | null;
  /** Read at build time (scripts/install.mjs, CMake), not by the running package. */
  buildTime?: boolean;
  meaning: string;
}

export const ENVIRONMENT_SETTINGS: readonly EnvironmentSetting[] = [
  { name: 'MONOSEMANTIC_BACKEND', values: ['auto', 'cpu', 'cuda'], meaning: 'the backend tensors go to when none is named' },
  {
    name: 'MONOSEMANTIC_THREADS',
    values: null,
    check: (v) => (/^[1-9]\d*$/.test(v) ? null : 'a positive whole number of CPU threads'),
    meaning: 'CPU threads (default: all cores)',
  },
  { name: 'MONOSEMANTIC_SIMD', values: ['avx512', 'avx2', 'scalar'], meaning: 'cap on the CPU instruction set (default: the best the CPU has)' },
  { name: 'MONOSEMANTIC_CPU_SAE_SPARSE', values: ['auto', 'always', 'never'], meaning: "the CPU SAE step's products over the active features only" },
  { name: 'MONOSEMANTIC_CUDA_LIBRARY', values: null, check: (v) => (v.length > 0 ? null : 'a path'), meaning: 'path of the CUDA backend library' },
  { name: 'MONOSEMANTIC_CUDA_KERNELS', values: ['tensor', 'simple'], meaning: 'tensor-core kernels, or the simple reference kernels' },
  { name: 'MONOSEMANTIC_CUDA_GEMM', values: ['auto', 'mma', 'wgmma'], meaning: "the tensor-core products' instruction on Hopper (auto: wgmma for long-K plain products)" },
  { name: 'MONOSEMANTIC_CUDA_WGMMA_TILE', values: ['256', '128'], meaning: "the Hopper GEMM's tiles: 128 x 256, one block per multiprocessor (256: the default), or 128 x 128, two (128)" },
  { name: 'MONOSEMANTIC_CUDA_WGMMA_PAIR', values: ['off', 'on'], meaning: "whether the Hopper GEMM's wide tiles run in 2-block clusters that share B's loads (off: the default)" },
  { name: 'MONOSEMANTIC_CUDA_EPILOGUE', values: ['staged', 'direct'], meaning: "how the mma.sync kernel's plain products store their results (staged: through shared memory, a row at a time; the default)" },
  { name: 'MONOSEMANTIC_CUDA_SHORT_K', values: ['on', 'off'], meaning: 'the short-K kernel for NT products with K <= 128 (the logits product; on: the default)' },
  { name: 'MONOSEMANTIC_CUDA_ATTENTION', values: ['mma', 'tiled'], meaning: 'attention kernels over whole sequences at bf16 (mma: tensor cores, the default)' },
  { name: 'MONOSEMANTIC_CUDA_ATTENTION_PREFETCH', values: ['on', 'off'], meaning: "whether the tensor-core attention reads each tile's rows during the previous tile's products (off: the default)" },
  { name: 'MONOSEMANTIC_CUDA_ALLOC', values: ['pool', 'plain'], meaning: "the stream-ordered memory pool, or cudaMalloc and cudaFree per tensor" },
  { name: 'MONOSEMANTIC_CUDA_UPLOAD', values: ['staged', 'pageable'], meaning: 'uploads through the pinned staging ring, or straight from JS memory' },
  { name: 'MONOSEMANTIC_CUDA_ASYNC', values: ['1', '0'], meaning: 'CUDA operations settle once queued (1), or once complete (0: for debugging)' },
  {
    name: 'MONOSEMANTIC_CROSS_ENTROPY',
    values: ['logits', 'fused'],
    meaning: "how language-model training, its evaluation and a forward asking for the loss alone take the loss: from logits formed in memory (logits), or with the unembedding product fused into the cross-entropy, never forming them (fused: at bf16 precision, on CUDA with d_model 32, 64 or 128; logits elsewhere)",
  },
  { name: 'MONOSEMANTIC_PROFILE', values: ['0', '1'], meaning: 'time every native call and print the table at exit' },
  { name: 'MONOSEMANTIC_CUDA', values: ['1', '0'], buildTime: true, meaning: 'build the CUDA backend when nvcc is present' },
];

export interface EnvironmentProblems {
  /** One line per variable set to a value it does not accept. */
  errors: string[];
  /** One line per MONOSEMANTIC_* variable that is not one of the package's. */
  unknown: string[];
}

/** 'a', 'b' or 'c' */
function oneOf(values: readonly string[]): string {
  const quoted = values.map((v) => `'${v}'`);
  return quoted.length === 1 ? quoted[0]! : `${quoted.slice(0, -1).join(', ')} or ${quoted.at(-1)}`;
}

/** Levenshtein distance, for suggesting the known name closest to a mistyped one. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

/** The problems with the MONOSEMANTIC_* variables in `env`. An empty value counts as unset. */
export function checkEnvironment(env: NodeJS.ProcessEnv = process.env): EnvironmentProblems {
  const problems: EnvironmentProblems = { errors: [], unknown: [] };
  const byName = new Map(ENVIRONMENT_SETTINGS.map((s) => [s.name, s]));
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('MONOSEMANTIC_') || value === undefined || value === '') continue;
    const setting = byName.get(name);
    if (!setting) {
      const closest = ENVIRONMENT_SETTINGS.map((s) => ({ name: s.name, d: editDistance(name, s.name) })).sort((a, b) => a.d - b.d)[0]!;
      const hint = closest.d <= 3 ? `did you mean ${closest.name}?` : `known ones: ${ENVIRONMENT_SETTINGS.map((s) => s.name).join(', ')}`;
      problems.unknown.push(`${name} is not a monosemantic setting and is ignored (${hint})`);
      continue;
    }
    if (setting.buildTime) continue;
    const accepted = setting.name === 'MONOSEMANTIC_BACKEND' ? value.trim().toLowerCase() : value;
    if (setting.values) {
      if (!setting.values.includes(accepted)) {
        problems.errors.push(`${name} must be ${oneOf(setting.values)} (got '${value}')`);
      }
    } else {
      const problem = setting.check?.(value) ?? null;
      if (problem) problems.errors.push(`${name} must be ${problem} (got '${value}')`);
    }
  }
  return problems;
}
