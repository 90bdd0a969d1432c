#!/usr/bin/env bash
# Fetches NVIDIA's libdevice (nvvm/libdevice/libdevice.10.bc, the CUDA math library as LLVM
# bitcode) from PyPI and prints a folder shaped like a CUDA toolkit, for CUDA_PATH:
#
#   export CUDA_PATH=$(gpu/libdevice.sh)     # $CUDA_PATH/nvvm/libdevice/libdevice.10.bc
#
# Why: Burn's `cuda` backend compiles kernels to PTX with CubeCL's LLVM backend, and a kernel
# that calls exp, log, tanh, erf, pow, sin, ... (softmax, GELU, the losses: nearly every model)
# is linked against libdevice, which CubeCL looks for in $CUDA_PATH or a toolkit under
# /usr/local/cuda, /opt/cuda, /usr/lib/cuda or /usr. A machine with only the NVIDIA driver (or
# with torch's pip wheels) has none, and the first such kernel fails to compile. The file is
# plain bitcode, the same for every GPU and driver: this one comes from the
# nvidia-cuda-nvcc-cu12 wheel (pip checks it against PyPI's hash): ~0.5 MB of a 40 MB
# download, cached in $LIBDEVICE_DIR (default ~/.cache/cuda-libdevice).
# Used by CI (the PTX test in bert/src/cube_kernels/) and gpu/pack.sh (carried to the GPU
# machine, where gpu/run.sh prefers a toolkit of its own).
set -euo pipefail
version=12.9.86
root=${LIBDEVICE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cuda-libdevice}
file=$root/nvvm/libdevice/libdevice.10.bc
if [[ ! -s $file ]]; then
  echo "libdevice: fetching nvidia-cuda-nvcc-cu12==$version (PyPI) for $file" >&2
  "$(dirname "$0")/wheel-file.sh" "nvidia-cuda-nvcc-cu12==$version" nvvm/libdevice/libdevice.10.bc 4243c0de "$file"
fi
echo "$root"
