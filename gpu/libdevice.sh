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
py=${PYTHON:-python3}
root=${LIBDEVICE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cuda-libdevice}
file=$root/nvvm/libdevice/libdevice.10.bc
if [[ ! -s $file ]]; then
  echo "libdevice: fetching nvidia-cuda-nvcc-cu12==$version (PyPI) for $file" >&2
  mkdir -p "$(dirname "$file")"
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  "$py" -m pip download -q --no-deps --no-cache-dir --only-binary=:all: \
    --platform manylinux2014_x86_64 -d "$tmp" "nvidia-cuda-nvcc-cu12==$version" >&2
  "$py" - "$tmp"/*.whl "$file.tmp" <<'EOF'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    member = next(n for n in z.namelist() if n.endswith("nvvm/libdevice/libdevice.10.bc"))
    bitcode = z.read(member)
if bitcode[:4] != b"BC\xc0\xde":
    sys.exit(f"libdevice: {member} is not LLVM bitcode")
with open(dest, "wb") as f:
    f.write(bitcode)
EOF
  mv "$file.tmp" "$file"
fi
echo "$root"
