#!/usr/bin/env bash
# Fetches NVIDIA's PTX assembler (ptxas, CUDA 13.0) from PyPI and prints its path:
#
#   export PTXAS=$(gpu/ptxas.sh)
#
# Why: Burn's `cuda` backend hands the driver PTX that CubeCL's LLVM backend wrote; the driver
# assembles it for the GPU when a module is loaded, and a module it rejects fails the run there,
# on a GPU machine's scarce minutes. ptxas is that assembler as a host program: no GPU, no
# driver. Both the PTX test (bert/src/cube_kernels/kernels/ptx.rs, with $PTXAS set) and the
# stand-in driver of gpu/rehearse-cuda.sh run it on every module. CUDA 13.0's, as the GPU
# machines' driver is 13.0: it takes PTX ISA 9.0, which CubeCL writes for that driver (CUDA
# 12.9's ptxas stops at 8.8). One file (36 MB) of the nvidia-cuda-nvcc wheel (37 MB; pip checks
# it against PyPI's hash), cached in $PTXAS_DIR (default ~/.cache/cuda-ptxas-13.0.88).
# Used by CI (.ci/run) and gpu/rehearse-cuda.sh.
set -euo pipefail
version=13.0.88
root=${PTXAS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cuda-ptxas-$version}
file=$root/bin/ptxas
if [[ ! -x $file ]]; then
  echo "ptxas: fetching nvidia-cuda-nvcc==$version (PyPI) for $file" >&2
  "$(dirname "$0")/wheel-file.sh" "nvidia-cuda-nvcc==$version" /bin/ptxas 7f454c46 "$file"
  chmod +x "$file"
fi
[[ $("$file" --version) == *"release ${version%.*},"* ]] || { echo "ptxas: $file is not CUDA ${version%.*}'s" >&2; exit 1; }
echo "$file"
