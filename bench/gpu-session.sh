#!/usr/bin/env bash
# The GPU machine's checklist, in stages that each fit one device call (under 10 minutes):
#
#   bash bench/gpu-session.sh check     # test/gpu (also with MONOSEMANTIC_CUDA_ASYNC=0); the playgrounds' correctness; compute-sanitizer
#                                       # on them and on a small training run; the card's peaks
#   bash bench/gpu-session.sh bench     # GEMMs vs cuBLAS; the update kernels; SAE step (tensor and simple paths) vs PyTorch (eager,
#                                       # torch.compile); their 1,000-step loss curves; LM forward and training vs HF;
#                                       # the main job's pipeline (harvested vs consumed, data wait)
#   bash bench/gpu-session.sh run       # the default `monosemantic run` on CUDA (A/1: 4,096 features, ten passes), models A and B;
#                                       # their SAEs come back as $OUT/sae-{a,b}.tar.xz.part-* (cat the parts, untar)
#   bash bench/gpu-session.sh analysis  # eval, features, compare, automata and the browser on those runs' SAEs
#   bash bench/gpu-session.sh profile   # where the time goes: LM forward/training per native op, the
#                                       # memory pool against plain cudaMalloc, queued operations (the default)
#                                       # against per-op synchronous ones (MONOSEMANTIC_CUDA_ASYNC=0), the SAE
#                                       # step's kernels (ncu)
#   bash bench/gpu-session.sh next      # what the last session left to measure, first call: the GPU tests, compute-sanitizer
#                                       # on the pending kernels, the issues' comparisons with their references
#   bash bench/gpu-session.sh next2     # its second call: the variants timed, kernel tables under ncu, the GEMM playground
#   bash bench/gpu-session.sh retrain   # the shipped models A and B trained on the GPU (pack with --lean --train-tokens),
#                                       # then the default SAE run on each and universality; models come back in $OUT
#   bash bench/gpu-session.sh proof     # issue 3 in one call: test/gpu, correctness sweeps, SAE step vs
#                                       # PyTorch, 1,000-step curves, timing sweeps, compute-sanitizer
#
# Prepared here (the device machine has no node and no network): npm ci; the addon with its CUDA
# backend for sm_90 (cmake-js configure --CDMONOSEMANTIC_CUDA=ON --CDMONOSEMANTIC_CUDA_ARCHS=90a-real,
# then cmake-js build; cmake-js is node_modules/cmake-js/bin/cmake-js); npm run build:ts;
# bash bench/kernels/build.sh; bash bench/pack-device.sh (everything into .device/, within the
# 64 MiB carry). Then one device
# call per stage:   run  carry: [".device"]
#                        command: . .device/setup && bash bench/gpu-session.sh check
# next and next2 share one pack: make the second call within 30 s of the first, while the machine is
# warm. Two stages whose packs differ (say next and retrain): pack both ahead, the second
# with `bash bench/pack-device.sh --lean --train-tokens --into=.device-retrain`, and make the second
# call within 30 s of the first (the machine stays warm that long) with carry [".device-retrain"]
# and `. .device-retrain/setup && bash bench/gpu-session.sh retrain`.
# Each stage writes its log and JSON under $OUT (bench/out when unset) and prints a short table last.
# BACKEND=cpu QUICK=1 runs the same stages on the CPU at toy sizes (a check of this script).
set -uo pipefail

stage=${1:?"usage: bash bench/gpu-session.sh check|bench|run|analysis|profile|proof|next|next2|retrain"}
out=${OUT:-bench/out}
work=${WORK:-/tmp/monosemantic-gpu}
backend=${BACKEND:-cuda}
python=${PYTHON:-python3}
quick=${QUICK:-0}
mkdir -p "$out" "$work"
cli=(node dist/lib/cli/main.js)
log="$out/$stage.log"
summary="$out/$stage-summary.txt"
: >"$summary"

# Runs a step, appending its output to the stage's log (and keeping it alone in $work/previous-step.out
# for the step after, to condense); records its status in the summary. With
# DEADLINE set (seconds from the stage's start), each step is cut at the deadline (rc 124) and a step
# that would start with under STEP_MIN seconds left is skipped, so the stage ends inside its call.
# STEP_CAP (seconds; set for one call: STEP_CAP=60 step ...) cuts a step that could hang (a kernel
# waiting on a barrier that never completes) before it eats the rest of the call.
step() {
  local name=$1
  shift
  local limit=()
  if [ -n "${DEADLINE:-}" ]; then
    local left=$((DEADLINE - SECONDS))
    if [ "$left" -lt "${STEP_MIN:-20}" ]; then
      printf '%-34s skipped (deadline)\n' "$name" >>"$summary"
      return 0
    fi
    [ -n "${STEP_CAP:-}" ] && [ "$STEP_CAP" -lt "$left" ] && left=$STEP_CAP
    limit=(timeout --kill-after=5 "$left")
  elif [ -n "${STEP_CAP:-}" ]; then
    limit=(timeout --kill-after=5 "$STEP_CAP")
  fi
  echo "=== $name: $*" >>"$log"
  local t0=$SECONDS
  "${limit[@]}" "$@" >"$work/step.out" 2>&1
  local rc=$?
  cat "$work/step.out" >>"$log"
  mv "$work/step.out" "$work/previous-step.out"
  printf '%-34s rc %-3s %4ss\n' "$name" "$rc" "$((SECONDS - t0))" >>"$summary"
  return $rc
}

# A ceiling from $out/peaks.json (written by the peaks step), rounded; empty when not measured.
measured_peak() {
  node -e "try{console.log(require(require('path').resolve(process.argv[1])).$1.toFixed(0))}catch{}" "$out/peaks.json" 2>/dev/null
}

# The default `monosemantic run` (toy-sized with QUICK=1) on model folders $1 (A) and $2 (B) into
# $work/sae-{a,b}, each summary copied to $out; with $3 = keep, each SAE also comes back as
# $out/sae-{a,b}.tar.xz.part-* (files come back at most 16 MiB each; cat the parts, untar).
run_saes() {
  local extra=() m dir
  [ "$quick" = 1 ] && extra=(--steps 20 --set eval.contexts=4)
  for m in a b; do
    dir=$([ "$m" = a ] && echo "$1" || echo "$2")
    rm -rf "$work/sae-$m"
    step "run, model $m" "${cli[@]}" run --backend "$backend" --model "$dir" -o "$work/sae-$m" --no-progress "${extra[@]}"
    cp "$work/sae-$m/summary.json" "$out/run-$m-summary.json" 2>/dev/null
    [ "${3:-}" = keep ] && [ -d "$work/sae-$m/sae" ] && tar -cJf - -C "$work/sae-$m" sae | split -b 15m - "$out/sae-$m.tar.xz.part-"
  done
  return 0
}

# Universality of $work/sae-{a,b}/sae on model folders $1 (A) and $2 (B) over 2,048 contexts (16
# with QUICK=1), into $out/universality.json.
compare_saes() {
  step "compare A/B (universality)" "${cli[@]}" compare --sae-a "$work/sae-a/sae" --sae-b "$work/sae-b/sae" \
    --model-a "$1" --model-b "$2" --contexts "$([ "$quick" = 1 ] && echo 16 || echo 2048)" --no-map \
    --backend "$backend" -o "$out/universality.json"
}

torch_device=$([ "$backend" = cuda ] && echo cuda || echo cpu)
playground=build/kernels/gemm_bf16
update_playground=build/kernels/decoder_update
# cuBLAS for the playground's reference column: PyTorch's wheel or the toolkit, wherever it is.
cublas=$(find $("$python" -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null) /usr/local/cuda*/lib64 \
  -name 'libcublas.so.*' 2>/dev/null | head -n 1)
: >"$log"
echo "$(date -u +%FT%TZ) stage $stage, backend $backend, commit $(git describe --always --dirty 2>/dev/null || echo '?') on $(git branch --show-current 2>/dev/null || echo '?')" >>"$log"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv >>"$log" 2>&1

case $stage in
check)
  step doctor "${cli[@]}" doctor
  step "test/gpu" node_modules/.bin/vitest run test/gpu --reporter=verbose
  step "test/gpu (MONOSEMANTIC_CUDA_ASYNC=0)" env MONOSEMANTIC_CUDA_ASYNC=0 node_modules/.bin/vitest run test/gpu
  # The card's two ceilings (a large bf16 GEMM, a large device copy), measured as found.
  step peaks "$python" bench/reference/peaks.py "$out/peaks.json" "$torch_device"
  [ "$backend" = cuda ] && [ -x "$playground" ] && step "gemm playground: correctness" "$playground" --check ${cublas:+--cublas "$cublas"}
  [ "$backend" = cuda ] && [ -x "$update_playground" ] && step "update playground: correctness" "$update_playground" --check-only
  # A small training run (resampling included), the GEMMs and the analysis ops under compute-sanitizer.
  if command -v compute-sanitizer >/dev/null; then
    if [ "$backend" = cuda ] && [ -x "$playground" ]; then
      for tool in memcheck racecheck; do
        step "sanitizer $tool: gemm playground" compute-sanitizer --tool "$tool" --error-exitcode 1 "$playground" --check
        step "sanitizer $tool: update playground" compute-sanitizer --tool "$tool" --error-exitcode 1 "$update_playground" --check-only
      done
    fi
    for tool in memcheck racecheck; do
      step "sanitizer $tool: sae step" compute-sanitizer --tool "$tool" --error-exitcode 1 \
        node dist/bench/sae-step-cuda.js --shapes 96x1000x257 --precision f32,bf16 --iters 2 --backend "$backend"
    done
    step "sanitizer memcheck: analysis ops" compute-sanitizer --tool memcheck --error-exitcode 1 --target-processes all \
      node_modules/.bin/vitest run test/gpu/cuda-analysis-ops.test.ts
  fi
  ;;
bench)
  # Cut at DEADLINE (default 540 s) so that the summary comes back within one call's limit.
  DEADLINE=${DEADLINE:-540}
  # Each call starts with an empty $OUT: the ceilings are measured here too, for the fractions.
  [ -f "$out/peaks.json" ] || step peaks "$python" bench/reference/peaks.py "$out/peaks.json" "$torch_device"
  peak=$(measured_peak bf16_tflops)
  shapes=$([ "$quick" = 1 ] && echo 64x512x256 || echo 512x16384x4096,512x131072x4096,768x24576x4096)
  [ "$backend" = cuda ] && [ -x "$playground" ] && step "gemm playground: timing" "$playground" --time \
    ${peak:+--peak-tflops "$peak"} ${cublas:+--cublas "$cublas"}
  copy=$(measured_peak copy_gbps)
  [ "$backend" = cuda ] && [ -x "$update_playground" ] && step "update playground: timing" "$update_playground" \
    ${copy:+--peak-gbps "$copy"}
  step "sae step, monosemantic" node dist/bench/sae-step-cuda.js --backend "$backend" --shapes "$shapes" --iters "$([ "$quick" = 1 ] && echo 3 || echo 30)" \
    --kernels tensor,simple ${peak:+--peak-tflops "$peak"} --json "$out/sae-step.json"
  step "sae step, torch eager" "$python" bench/reference/torch_sae_step.py --device "$torch_device" --shapes "$shapes" \
    --iters "$([ "$quick" = 1 ] && echo 3 || echo 30)" --json "$out/torch-sae-step.json"
  step "sae step, torch.compile" "$python" bench/reference/torch_sae_step.py --device "$torch_device" --shapes "${shapes%%,*}" \
    --iters "$([ "$quick" = 1 ] && echo 3 || echo 30)" --compile --json "$out/torch-sae-step-compile.json"
  step "loss curves, tensor vs simple path" node dist/bench/kernel-paths.js --backend "$backend" \
    $([ "$quick" = 1 ] && echo "--steps 20 --shape 32x128x64" || echo "--steps 1000") --json "$out/kernel-paths.json"
  lm=$([ "$quick" = 1 ] && echo "--batch 2 --ctx 64 --iters 2" || echo "--batch 64 --ctx 1024 --iters 10")
  # The issue's sizes: the 1-layer model at 64 x 1,024, GPT-2 small at 16 x 1,024, fp32 and bf16.
  lmf=$([ "$quick" = 1 ] && echo "--batch 2 --ctx 64 --iters 2" || echo "--batch 64 --ctx 1024 --gpt2-batch 16 --gpt2-ctx 1024")
  for precision in f32 bf16; do
    step "lm forward $precision, monosemantic" node dist/bench/lm-forward.js --backend "$backend" --precision "$precision" $lmf
    step "lm forward $precision, HF" "$python" bench/reference/hf_forward.py --device "$torch_device" \
      --dtype "$([ "$precision" = f32 ] && echo float32 || echo bfloat16)" $lmf
  done
  # The main job's pipeline: harvested vs consumed activations/s and the data wait, in both CUDA modes.
  pipe=$([ "$quick" = 1 ] && echo "--batch 256 --steps 20 --forward-batch 8 --window 16 --d-sae 512" || echo "")
  step "pipeline" node dist/bench/pipeline.js --backend "$backend" $pipe --json "$out/pipeline.json"
  step "pipeline (MONOSEMANTIC_CUDA_ASYNC=0)" env MONOSEMANTIC_CUDA_ASYNC=0 node dist/bench/pipeline.js --backend "$backend" $pipe
  step "lm train, monosemantic" node dist/bench/lm-train.js --backend "$backend" $lm
  step "lm train, HF eager" "$python" bench/reference/hf_train.py --device "$torch_device" $lm
  [ "$quick" = 1 ] || step "lm train, HF torch.compile" "$python" bench/reference/hf_train.py --device "$torch_device" $lm --compile
  grep -E '^\| |^torch |^HF |tokens/s|^largest|^harvested' "$log" | tail -56
  ;;
next|next2)
  # What the last session left to measure, in two calls, each cut at DEADLINE (default 560 s, for a
  # call of at most 600). A GPU session may hold only one such call (its device time counts the
  # machine's start), so the first decides what can land: every GPU test, the training step and
  # the forward under compute-sanitizer's memcheck, and the issues' comparisons
  # side by side with their references (the training step formed and fused against torch.compile,
  # the forwards against HF, the SAE step against torch.compile). The second says where the time
  # goes and which variant to make the default: the variants timed (wgmma pairs and square tiles,
  # direct store, general logits kernel, attention with the register prefetch), the kernel tables of the
  # training step and of GPT-2 small's forward under ncu, the GEMM playground and its profiles.
  DEADLINE=${DEADLINE:-560}
  lm=$([ "$quick" = 1 ] && echo "--batch 2 --ctx 64" || echo "--batch 64 --ctx 1024")
  shapes=$([ "$quick" = 1 ] && echo 64x512x256 || echo 512x16384x4096,512x131072x4096,768x24576x4096)
  iters=$([ "$quick" = 1 ] && echo 3 || echo 30)
  gpt2=(--gpt2-batch "$([ "$quick" = 1 ] && echo 1 || echo 16)" --gpt2-ctx "$([ "$quick" = 1 ] && echo 64 || echo 1024)")
  fwd=(node dist/bench/lm-forward.js --backend "$backend" --precision bf16 $lm --cases harvest,logits,logits-bf16,forward,forward-bf16,gpt2,gpt2-bf16 --iters 20 "${gpt2[@]}")
  direct=(env MONOSEMANTIC_CUDA_EPILOGUE=direct)
  general=(env MONOSEMANTIC_CUDA_SHORT_K=off)
  square=(env MONOSEMANTIC_CUDA_GEMM=wgmma MONOSEMANTIC_CUDA_WGMMA_TILE=128)
  fused=(env MONOSEMANTIC_CROSS_ENTROPY=fused)
  pairs=(env MONOSEMANTIC_CUDA_WGMMA_PAIR=on)
  train=(node dist/bench/lm-train.js --backend "$backend" $lm --iters "$([ "$quick" = 1 ] && echo 2 || echo 10)")
  sae=(node dist/bench/sae-step-cuda.js --backend "$backend" --precision bf16 --kernels tensor --shapes "$shapes" --iters "$iters")
  small=(--batch 4 --ctx 128 --iters 1)
  # The kernels of one run of "$@" under ncu, as a table of the top N ($1) kernels over R ($2) runs.
  ncu_table() {
    local name=$1 top=$2 runs=$3
    shift 3
    STEP_CAP=90 step "$name (ncu)" ncu --clock-control none --target-processes all --metrics gpu__time_duration.sum \
      --print-summary per-kernel "$@"
    step "$name, table" node dist/bench/ncu-table.js "$work/previous-step.out" --top "$top" --runs "$runs"
  }
  if [ "$stage" = next ]; then
    # Every GPU test, four files at a time (16 CPU cores; each file its own process and CUDA
    # context): the square tiles and pairs, the fused cross-entropy, the staged store, the short-K
    # logits kernel, the chunked cross-entropy, the attention prefetch, accumulate, linear_qkv.
    STEP_CAP=240 step "test/gpu" node_modules/.bin/vitest run test/gpu --fileParallelism --maxWorkers 4
    # The training step and the forward at a small size under compute-sanitizer's memcheck (the
    # q/k/v split epilogue, accumulate, the short-K logits, the chunked and fused cross-entropy,
    # attention with strided gradients, the ReLU-masked backward); racecheck and the SAE step's
    # square tiles open the second call.
    if command -v compute-sanitizer >/dev/null; then
      STEP_CAP=90 step "sanitizer memcheck: lm train, fused cross-entropy" "${fused[@]}" compute-sanitizer --tool memcheck \
        --error-exitcode 1 node dist/bench/lm-train.js --backend "$backend" "${small[@]}"
      STEP_CAP=90 step "sanitizer memcheck: lm forward" compute-sanitizer --tool memcheck --error-exitcode 1 \
        node dist/bench/lm-forward.js --backend "$backend" --precision bf16 --cases harvest,logits-bf16,forward-bf16 "${small[@]}"
    fi
    step peaks "$python" bench/reference/peaks.py "$out/peaks.json" "$torch_device"  # the ceilings for the fractions
    peak=$(measured_peak bf16_tflops)
    # Issue 6: the training step with the logits formed, fused, and torch.compile's, in one call.
    step "lm train, logits formed" "${train[@]}"
    step "lm train, fused cross-entropy" "${fused[@]}" "${train[@]}"
    STEP_CAP=120 step "lm train, HF torch.compile" "$python" bench/reference/hf_train.py --device "$torch_device" $lm \
      --iters "$([ "$quick" = 1 ] && echo 2 || echo 10)" $([ "$quick" = 1 ] || echo --compile)
    # Issue 5: the forwards against HF's; the forward + loss fused.
    step "lm forward bf16" "${fwd[@]}"
    step "lm forward bf16 + loss, fused cross-entropy" "${fused[@]}" node dist/bench/lm-forward.js --backend "$backend" \
      --precision bf16 $lm --cases forward,forward-bf16 --iters 20
    step "lm forward bf16, HF" "$python" bench/reference/hf_forward.py --device "$torch_device" --dtype bfloat16 $lm "${gpt2[@]}"
    # Issue 3: the SAE step against torch.compile's.
    STEP_CAP=90 step "sae step" "${sae[@]}" ${peak:+--peak-tflops "$peak"} --json "$out/sae-step.json"
    STEP_CAP=150 step "sae step, torch.compile" "$python" bench/reference/torch_sae_step.py --device "$torch_device" \
      --shapes "$shapes" --iters "$iters" --compile --json "$out/torch-sae-step-compile.json"
  else
    if command -v compute-sanitizer >/dev/null; then
      STEP_CAP=90 step "sanitizer racecheck: lm train, fused cross-entropy" "${fused[@]}" compute-sanitizer --tool racecheck \
        --error-exitcode 1 node dist/bench/lm-train.js --backend "$backend" "${small[@]}"
      STEP_CAP=90 step "sanitizer memcheck: lm train" compute-sanitizer --tool memcheck --error-exitcode 1 \
        node dist/bench/lm-train.js --backend "$backend" "${small[@]}"
      STEP_CAP=90 step "sanitizer racecheck: lm forward" compute-sanitizer --tool racecheck --error-exitcode 1 \
        node dist/bench/lm-forward.js --backend "$backend" --precision bf16 --cases logits-bf16,forward-bf16 "${small[@]}"
      STEP_CAP=90 step "sanitizer racecheck: attention, prefetch" env MONOSEMANTIC_CUDA_ATTENTION_PREFETCH=on \
        compute-sanitizer --tool racecheck --error-exitcode 1 node dist/bench/attention.js --backend "$backend" \
        --precision bf16 --iters 1 --shapes 2x200x128x4,1x130x768x12
      STEP_CAP=90 step "sanitizer memcheck: sae step, square tiles" "${square[@]}" compute-sanitizer --tool memcheck \
        --error-exitcode 1 node dist/bench/sae-step-cuda.js --backend "$backend" --precision bf16 --kernels tensor \
        --shapes 264x1032x1000 --iters 1
    fi
    [ -f "$out/peaks.json" ] || step peaks "$python" bench/reference/peaks.py "$out/peaks.json" "$torch_device"
    peak=$(measured_peak bf16_tflops)
    # The variants that would become defaults, each against the default in the same call.
    step "lm train" "${train[@]}"
    step "lm train, fused cross-entropy" "${fused[@]}" "${train[@]}"
    step "lm train, fused, wgmma pairs for every product" "${fused[@]}" "${pairs[@]}" MONOSEMANTIC_CUDA_GEMM=wgmma "${train[@]}"
    step "lm train, fused, square wgmma tiles for every product" "${fused[@]}" "${square[@]}" "${train[@]}"
    step "lm train, direct store" "${direct[@]}" "${train[@]}"
    step "lm forward bf16" "${fwd[@]}"
    step "lm forward bf16, wgmma pairs for every product" "${pairs[@]}" MONOSEMANTIC_CUDA_GEMM=wgmma "${fwd[@]}"
    step "lm forward bf16, square wgmma tiles for every product" "${square[@]}" "${fwd[@]}"
    step "lm forward bf16, direct store" "${direct[@]}" "${fwd[@]}"
    step "lm forward bf16, general logits kernel" "${general[@]}" "${fwd[@]}"
    STEP_CAP=90 step "sae step" "${sae[@]}" ${peak:+--peak-tflops "$peak"}
    STEP_CAP=90 step "sae step, wgmma pairs" "${pairs[@]}" "${sae[@]}" ${peak:+--peak-tflops "$peak"}
    STEP_CAP=90 step "sae step, square wgmma tiles for every product" "${square[@]}" "${sae[@]}" ${peak:+--peak-tflops "$peak"}
    STEP_CAP=90 step "sae step, direct store" "${direct[@]}" "${sae[@]}" ${peak:+--peak-tflops "$peak"}
    attn=(node dist/bench/attention.js --backend "$backend" --precision bf16 --iters "$([ "$quick" = 1 ] && echo 3 || echo 20)"
      --shapes "$([ "$quick" = 1 ] && echo 2x64x128x4,1x64x768x12 || echo 64x1024x128x4,16x1024x768x12)" ${peak:+--peak-tflops "$peak"})
    step "attention" "${attn[@]}"
    step "attention, prefetch" env MONOSEMANTIC_CUDA_ATTENTION_PREFETCH=on "${attn[@]}"
    # Where the tensor-core attention's time goes at the paper model's shape (B 64, T 1,024, 4
    # heads of 32): the forward, dq and dk/dv kernels' throughputs, stall reasons and memory traffic,
    # one launch each.
    if command -v ncu >/dev/null; then
      for kernels in "attention_mma_forward -c 1" "attention_mma_d -c 2"; do  # the forward; dq and dk/dv
        STEP_CAP=90 step "attention under ncu: ${kernels%% *}" ncu --clock-control none -k regex:$kernels \
          --section SpeedOfLight --section WarpStateStats --section MemoryWorkloadAnalysis --section Occupancy \
          --section LaunchStats node dist/bench/attention.js --backend "$backend" --precision bf16 --iters 1 \
          --shapes "$([ "$quick" = 1 ] && echo 2x64x128x4 || echo 64x1024x128x4)"
      done
    fi
    # Where the time goes, kernel by kernel: the training step fused (2 warm-up, 1 timed, 1 queued
    # runs), GPT-2 small's forward (warm-up + 2) and the 1-layer forward + loss (warm-up + 1).
    if command -v ncu >/dev/null; then
      ncu_table "lm training step kernels, fused cross-entropy" 25 4 "${fused[@]}" node dist/bench/lm-train.js \
        --backend "$backend" $lm --iters 1
      ncu_table "GPT-2 small forward kernels" 25 3 node dist/bench/lm-forward.js --backend "$backend" --precision bf16 \
        --cases gpt2-bf16 --iters 1 "${gpt2[@]}"
      ncu_table "lm full forward + loss kernels" 20 2 node dist/bench/lm-forward.js --backend "$backend" \
        --precision bf16 $lm --cases forward-bf16 --iters 1
    fi
    if [ "$backend" = cuda ] && [ -x "$playground" ]; then
      STEP_CAP=60 step "gemm playground: correctness" "$playground" --check ${cublas:+--cublas "$cublas"}
      STEP_CAP=90 step "gemm playground: the LMs' products" "$playground" --time-lm --iters 10 ${peak:+--peak-tflops "$peak"} ${cublas:+--cublas "$cublas"}
      STEP_CAP=100 step "gemm playground: timing" "$playground" --time --iters 10 ${peak:+--peak-tflops "$peak"} ${cublas:+--cublas "$cublas"}
      if command -v ncu >/dev/null; then
        # The 8192^3 product on wide, square and paired wide tiles: how much of L2's bandwidth
        # their operands take (NOTES-gemm-bf16.md: at long K a wide tile's time matches its operand
        # bytes at about 7 TB/s; pairs share B).
        for v in 3 4 9; do
          STEP_CAP=60 step "wgmma 8192^3 under ncu, version $v" ncu --clock-control none -k regex:gemm_wgmma_kernel -c 1 \
            --section SpeedOfLight --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables \
            "$playground" --time --only "8192^3" --versions "$v" --iters 1
        done
        # Where a wgmma tile's time goes at K = 512 (the SAE encoder's product), on wide and square
        # tiles and with the wide tile stored by TMA: the stall reasons and the SASS lines they
        # fall on ($out/wgmma-k512-v*-sass.csv).
        for v in 3 4 7; do
          STEP_CAP=90 step "wgmma K = 512 under ncu, version $v" ncu --clock-control none -k regex:gemm_wgmma_kernel -c 1 \
            --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis \
            --section SourceCounters -f -o "$out/wgmma-k512-v$v" "$playground" --time --only "f = xc W_enc" --versions "$v" --iters 1
          STEP_CAP=30 step "wgmma K = 512 under ncu, version $v: details" ncu --import "$out/wgmma-k512-v$v.ncu-rep" --page details
          STEP_CAP=30 step "wgmma K = 512 under ncu, version $v: SASS" bash -c 'ncu --import "$1" --page source --print-source sass --csv >"$2"' \
            _ "$out/wgmma-k512-v$v.ncu-rep" "$out/wgmma-k512-v$v-sass.csv"
        done
      fi
      if command -v compute-sanitizer >/dev/null; then
        STEP_CAP=90 step "sanitizer memcheck: gemm playground" compute-sanitizer --tool memcheck --error-exitcode 1 "$playground" --check
      fi
    fi
  fi
  grep -E '^\| |tokens/s|^ *(Tests|Test Files) |FAIL|^torch |^HF |^device time|^\([0-9]+, |^LM |ms profiled' "$log" | tail -150
  ;;
retrain)
  # The shipped models, trained on the GPU: A and B (seeds 1 and 2) on the training split
  # corpus/build/train.tokens (carried by `bash bench/pack-device.sh --lean --train-tokens`), TOKENS
  # next-token predictions each (default 480M, about 20 passes: the shipped models, a minute each on
  # an H200), 64 contexts of 256 tokens a step, the
  # whole validation split every 250 steps. Each model folder (config, bf16 weights, tokenizer, card,
  # loss curve) comes back with its metrics as $OUT/model-{a,b}.tar.xz. Then the default SAE run on
  # each new model and their universality.
  tokens=${TOKENS:-$([ "$quick" = 1 ] && echo 20000 || echo 480000000)}
  for m in a b; do
    rm -rf "$work/lm-$m"
    step "lm train, model $m" "${cli[@]}" lm train --train corpus/build/train.tokens --val corpus/val.tokens \
      --tokens "$tokens" --seed "$([ "$m" = a ] && echo 1 || echo 2)" --backend "$backend" -o "$work/lm-$m" --no-progress \
      --set training.batchSize=64 --set training.warmupSteps=200 --set eval.every=250 --set checkpoints.every=2000 \
      --set "export.name=monosemantic-1l-$m"
    [ -d "$work/lm-$m/model" ] && tar -cJf "$out/model-$m.tar.xz" -C "$work/lm-$m" model metrics.jsonl
  done
  run_saes "$work/lm-a/model" "$work/lm-b/model"
  compare_saes "$work/lm-a/model" "$work/lm-b/model"
  grep -E 'finished after|training loss|validation loss [0-9.]+$|waiting for activations|loss recovered|fraction of variance|median best-match' "$log" | tail -40
  ;;
proof)
  # Issue 3's proof in one call, most important first, cut at DEADLINE (default 400 s): doctor,
  # test/gpu, the card's peaks, the playgrounds' correctness sweeps, the SAE step (tensor path at the
  # three shapes, simple path at the first) against torch eager and torch.compile, the 1,000-step
  # loss curves of both paths, the GEMM and update timing sweeps, then compute-sanitizer.
  DEADLINE=${DEADLINE:-400}
  shapes=$([ "$quick" = 1 ] && echo 64x512x256 || echo 512x16384x4096,512x131072x4096,768x24576x4096)
  iters=$([ "$quick" = 1 ] && echo 3 || echo 30)
  step doctor "${cli[@]}" doctor
  step "test/gpu" node_modules/.bin/vitest run test/gpu
  step peaks "$python" bench/reference/peaks.py "$out/peaks.json" "$torch_device"
  peak=$(measured_peak bf16_tflops)
  copy=$(measured_peak copy_gbps)
  [ "$backend" = cuda ] && step "gemm playground: correctness" "$playground" --check ${cublas:+--cublas "$cublas"}
  [ "$backend" = cuda ] && step "update playground: correctness" "$update_playground" --check-only
  step "sae step, tensor path" node dist/bench/sae-step-cuda.js --backend "$backend" --shapes "$shapes" --iters "$iters" \
    --precision bf16 --kernels tensor ${peak:+--peak-tflops "$peak"} --json "$out/sae-step.json"
  step "sae step, simple path" node dist/bench/sae-step-cuda.js --backend "$backend" --shapes "${shapes%%,*}" --iters "$iters" \
    --precision bf16,f32 --kernels simple ${peak:+--peak-tflops "$peak"} --json "$out/sae-step-simple.json"
  step "sae step, torch eager" "$python" bench/reference/torch_sae_step.py --device "$torch_device" --shapes "$shapes" \
    --iters "$iters" --json "$out/torch-sae-step.json"
  step "loss curves, tensor vs simple path" node dist/bench/kernel-paths.js --backend "$backend" \
    $([ "$quick" = 1 ] && echo "--steps 20 --shape 32x128x64" || echo "--steps 1000") --json "$out/kernel-paths.json"
  step "sae step, torch.compile" "$python" bench/reference/torch_sae_step.py --device "$torch_device" --shapes "${shapes%%,*}" \
    --iters "$iters" --compile --json "$out/torch-sae-step-compile.json"
  [ "$backend" = cuda ] && step "gemm playground: timing" "$playground" --time --iters 10 \
    ${peak:+--peak-tflops "$peak"} ${cublas:+--cublas "$cublas"}
  [ "$backend" = cuda ] && step "update playground: timing" "$update_playground" ${copy:+--peak-gbps "$copy"}
  if command -v compute-sanitizer >/dev/null; then
    step "sanitizer memcheck: sae step" compute-sanitizer --tool memcheck --error-exitcode 1 \
      node dist/bench/sae-step-cuda.js --shapes 96x1000x257 --precision f32,bf16 --kernels tensor,simple --iters 2 --backend "$backend"
    [ "$backend" = cuda ] && step "sanitizer racecheck: gemm playground" compute-sanitizer --tool racecheck --error-exitcode 1 "$playground" --check
    step "sanitizer racecheck: sae step" compute-sanitizer --tool racecheck --error-exitcode 1 \
      node dist/bench/sae-step-cuda.js --shapes 96x1000x257 --precision bf16 --kernels tensor --iters 2 --backend "$backend"
    [ "$backend" = cuda ] && step "sanitizer memcheck: update playground" compute-sanitizer --tool memcheck --error-exitcode 1 "$update_playground" --check-only
  fi
  grep -E '^\| |^\(|^timing|^torch |^largest|FAIL|✗|×|Error' "$log" | tail -60  # ^\(: the playgrounds' timing rows
  ;;
profile)
  # Where the time goes: the LM forward with the memory pool and with plain cudaMalloc/cudaFree;
  # LM training with MONOSEMANTIC_PROFILE=1 (wall time per native operation); the SAE step's
  # kernels one by one under ncu (gpu__time_duration, clocks left alone).
  lm=$([ "$quick" = 1 ] && echo "--batch 2 --ctx 64 --iters 2" || echo "--batch 64 --ctx 1024 --iters 10")
  step "lm forward (memory pool)" node dist/bench/lm-forward.js --backend "$backend" $([ "$quick" = 1 ] && echo "--batch 2 --ctx 64 --iters 2")
  step "lm forward (plain cudaMalloc)" env MONOSEMANTIC_CUDA_ALLOC=plain node dist/bench/lm-forward.js --backend "$backend" \
    $([ "$quick" = 1 ] && echo "--batch 2 --ctx 64 --iters 2")
  step "lm train, per-op profile" env MONOSEMANTIC_PROFILE=1 node dist/bench/lm-train.js --backend "$backend" $lm
  step "lm train (plain cudaMalloc)" env MONOSEMANTIC_CUDA_ALLOC=plain node dist/bench/lm-train.js --backend "$backend" $lm
  # Each operation completed on a worker before it settles.
  step "lm forward (MONOSEMANTIC_CUDA_ASYNC=0)" env MONOSEMANTIC_CUDA_ASYNC=0 node dist/bench/lm-forward.js --backend "$backend" \
    $([ "$quick" = 1 ] && echo "--batch 2 --ctx 64 --iters 2")
  step "lm train (MONOSEMANTIC_CUDA_ASYNC=0), per-op profile" env MONOSEMANTIC_CUDA_ASYNC=0 MONOSEMANTIC_PROFILE=1 \
    node dist/bench/lm-train.js --backend "$backend" $lm
  if command -v ncu >/dev/null; then
    step "sae step kernels (ncu)" ncu --clock-control none --target-processes all --metrics gpu__time_duration.sum \
      --print-summary per-kernel node dist/bench/sae-step-cuda.js --backend "$backend" --shapes 512x16384x4096 \
      --precision bf16 --kernels tensor --iters 1
  fi
  grep -E '^\| |tokens/s|^[a-zA-Z]+ +[0-9]+ +[0-9.]+ +[0-9.]+|gpu__time_duration|^  [a-z_<>:, 0-9()]+kernel' "$log" | tail -80
  ;;
run)
  run_saes models/a models/b keep  # the SAEs come back, to analyse and browse here afterwards
  for m in a b; do cp "$work/sae-$m/metrics.jsonl" "$out/run-$m-metrics.jsonl" 2>/dev/null; done
  tail -n 30 "$log"
  ;;
analysis)
  sae_a=$work/sae-a/sae
  n=$([ "$quick" = 1 ] && echo 16 || echo 2048)
  step "eval A" "${cli[@]}" eval --sae "$sae_a" --model models/a --backend "$backend" --json
  step "features A" "${cli[@]}" features --sae "$sae_a" --model models/a --contexts "$n" --backend "$backend" -o "$work/features-a" --no-progress
  compare_saes models/a models/b
  step "automata A" "${cli[@]}" automata --sae "$sae_a" --model models/a --contexts "$n" --backend "$backend" -o "$work/automata-a.json"
  step "browse A" "${cli[@]}" browse --run "$work/sae-a" --model models/a --contexts "$n" --backend "$backend" \
    --compare "$out/universality.json" --automata "$work/automata-a.json" -o "$work/browser-a"
  tail -n 40 "$log"
  ;;
*)
  echo "unknown stage '$stage' (check, bench, run, analysis, profile, proof, next, next2 or retrain)" >&2
  exit 2
  ;;
esac
echo
echo "stage $stage ($backend): step, status, seconds"
cat "$summary"
