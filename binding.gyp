# CPU-only build of the core addon from source with node-gyp (no cmake, no CUDA needed).
# The CMake build (CMakeLists.txt, via cmake-js) builds the same addon plus the CUDA backend.
{
  "variables": {
    "ms_common_cflags": ["-O3", "-std=c++17", "-fvisibility=hidden", "-pthread"]
  },
  "targets": [
    {
      # Microkernels that need ISA flags live in their own static libraries, because node-gyp has
      # no per-file flags; the dispatcher picks one at run time after checking the CPU.
      "target_name": "monosemantic_avx2",
      "type": "static_library",
      "sources": ["native/cpu/gemm_kernel_avx2.cpp", "native/cpu/exp_kernel_avx2.cpp"],
      "include_dirs": ["native"],
      "cflags_cc": ["<@(ms_common_cflags)"],
      "conditions": [["target_arch=='x64'", {"cflags_cc": ["-mavx2", "-mfma"]}]]
    },
    {
      "target_name": "monosemantic_avx512",
      "type": "static_library",
      "sources": ["native/cpu/gemm_kernel_avx512.cpp"],
      "include_dirs": ["native"],
      "cflags_cc": ["<@(ms_common_cflags)"],
      "conditions": [["target_arch=='x64'", {
        "cflags_cc": ["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq", "-mfma"]
      }]]
    },
    {
      "target_name": "monosemantic",
      "dependencies": ["monosemantic_avx2", "monosemantic_avx512"],
      "sources": ["<!@(node scripts/gyp-sources.cjs)"],
      "include_dirs": ["native", "<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++14"],
      # -fno-math-errno: Adam's sqrt vectorises only when it need not set errno (the same IEEE
      # sqrt; CMake gives it to sae_cpu.cpp alone, node-gyp has no per-file flags).
      "cflags_cc": ["<@(ms_common_cflags)", "-fno-math-errno"],
      "libraries": ["-ldl", "-pthread"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17"
      },
      "msvs_settings": {"VCCLCompilerTool": {"ExceptionHandling": 1}}
    }
  ]
}
