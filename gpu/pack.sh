#!/usr/bin/env bash
# Builds, here, everything `gpu/run.sh` runs on a GPU machine (no Rust, no network there, at
# most 64 MiB carried with the working tree) into .gpu/, and the Vulkan loader into .gl/:
#
#   gpu/pack.sh            # ~35 min on 2 cores from a cold target folder, then 2-3 min of
#                          # gpu/rehearse-cuda.sh check (the cuda binary on a stand-in driver)
#   # then, with the device tool: carry [".gpu", ".gl"], command "gpu/run.sh all"
#
# .gpu/cubecl.tar.xz    the benchmark program and the test binary (benches/tests/gpu.rs: the
#                       parity and training tests) with `cuda,vulkan,wgpu,fusion,autotune`;
#                       each links CubeCL's LLVM (~130 MB stripped): the two go in one xz
#                       stream whose dictionary spans both, so the second costs ~6 MB, not 29.
# .gpu/tch-cuda.tar.xz  the same two (and pretrain, classify, forward) with `tch`, linked
#                       against the GPU machine's own torch 2.11.0+cu130 (gpu/tch-cuda.sh).
# .gpu/cuda/nvvm/libdevice/libdevice.10.bc  NVIDIA's libdevice (gpu/libdevice.sh): the cuda
#                       backend links it into kernels that call exp, erf, ...; gpu/run.sh
#                       points CUDA_PATH at it where the GPU machine has no CUDA toolkit.
# .gpu/COMMIT           the commit they were built from (the results files name it).
# .gl/*.deb             libvulkan1 and friends (the GPU machine has the NVIDIA ICD, no loader).
# Both folders are ignored by git (.git/info/exclude); the script says their size.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
mkdir -p .gpu .gl
for d in /.gpu/ /.gl/; do grep -qxF "$d" .git/info/exclude 2>/dev/null || echo "$d" >>.git/info/exclude; done
git rev-parse --short HEAD >.gpu/COMMIT
[[ -z $(git status --porcelain --untracked-files=no) ]] || echo "-dirty" >>.gpu/COMMIT

pack() { # pack NAME: $tmp/NAME/ in one xz stream whose dictionary spans its binaries
  (cd "$tmp" && tar cf - --sort=name "$1") | xz -T1 --lzma2=preset=6,dict=384MiB >".gpu/$1.tar.xz"
}

tmp=$(mktemp -d)
cp Cargo.lock "$tmp/Cargo.lock"
trap 'cp "$tmp/Cargo.lock" Cargo.lock; rm -rf "$tmp"' EXIT

# CubeCL backends (cuda needs the static LLVM that ../shared/tools/tracel-llvm.sh installs).
../shared/tools/tracel-llvm.sh >/dev/null
features=cuda,vulkan,wgpu,fusion,autotune
export CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-13000}
# CubeCL's SPIR-V compiler with its shared-memory fix (gpu/cubecl-spirv.sh): Vulkan devices
# without explicit workgroup layouts (lavapipe here) then run the kernels with shared memory;
# NVIDIA's driver takes the other path either way. Cargo.lock is restored on exit.
spirv=(--config "patch.crates-io.cubecl-spirv.path=\"$(gpu/cubecl-spirv.sh)\"")
cargo build --release "${spirv[@]}" -p benches --bins --features $features
gpu_test=$(cargo test --release "${spirv[@]}" -p benches --features $features --test gpu --no-run --message-format=json \
  | "$py" -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "gpu":
        print(m["executable"])')
mkdir -p "$tmp/cubecl"
strip -o "$tmp/cubecl/benches" target/release/benches
strip -o "$tmp/cubecl/gpu-tests" "$gpu_test"
pack cubecl

# tch-cuda against the GPU machine's torch.
DEST="$tmp/tch-cuda" gpu/tch-cuda.sh >/dev/null
pack tch-cuda

# NVIDIA's libdevice, for a GPU machine without a CUDA toolkit (0.5 MB).
mkdir -p .gpu/cuda/nvvm/libdevice
cp "$(gpu/libdevice.sh)/nvvm/libdevice/libdevice.10.bc" .gpu/cuda/nvvm/libdevice/

# The Vulkan loader (amd64 packages from Debian, whatever this machine is).
if ! compgen -G ".gl/libvulkan1_*.deb" >/dev/null; then
  o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
  mkdir -p /tmp/amd64/partial
  apt-get "${o[@]}" update -qq
  (cd .gl && apt-get "${o[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi

du -ch .gpu/*.tar.xz .gl/*.deb | tail -1
tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
carried=$(du -cb .gpu .gl | tail -1 | cut -f1)
echo "carried: $((carried / 1048576)) MiB + working tree $((tree / 1048576)) MiB (limit 64 MiB)"
(( carried + tree < 64 * 1048576 )) || { echo "over the 64 MiB a device call carries" >&2; exit 1; }

# The cuda binaries just packed, on a stand-in driver (gpu/rehearse-cuda.sh, 2-3 min): every
# kernel of a tiny step assembled by ptxas and launched within an H100's limits, before a GPU
# session spends its minutes on them.
BIN=$tmp/cubecl gpu/rehearse-cuda.sh check
