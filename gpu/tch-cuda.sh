#!/usr/bin/env bash
# Builds stripped `--features tch` binaries that run `--backend tch-cuda` on a GPU machine
# against the PyTorch already installed there (torch 2.11.0+cu130 in /opt/torch/.venv on the
# H100/H200 machines), and prints the folder they are in.
#
#   gpu/tch-cuda.sh                    # -> .gpu/tch-cuda/{benches,gpu-tests,pretrain,classify,forward}
#   # on the GPU machine:
#   export LD_LIBRARY_PATH=$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')/lib
#   .gpu/tch-cuda/benches run --backend tch-cuda --configs base --seq 128 --batch 32
#
# Why this works without a GPU, CUDA or network here:
# - burn-tch 0.22 (torch-sys 0.22) compiles against any libtorch given in LIBTORCH; PyPI's
#   torch 2.11.0 wheel *is* the cu130 build the GPU machines have, so its torch/include and
#   torch/lib are the libtorch to compile and link against (`pip download --no-deps`, ~530 MB,
#   kept in $LIBTORCH_CUDA_DIR, default ~/.cache/libtorch-2.11.0-cu130).
# - LIBTORCH_BYPASS_VERSION_CHECK=1 lets torch-sys 0.22 (written for 2.9.0) take 2.11.0;
#   LIBTORCH_CXX11_ABI=1: the wheels are built with the C++11 ABI.
# - libtorch_cuda.so needs cuDNN, cuBLAS, NCCL, ... (the nvidia-* wheels); they are not here and
#   need not be: `-Wl,--allow-shlib-undefined` links against libtorch_cuda.so without them. On
#   the GPU machine torch's own RUNPATH finds them.
# - rustc links with `--as-needed`, and no symbol of ours comes from libtorch_cuda.so (CUDA
#   registers itself through static initialisers), so it would be dropped and `tch-cuda` would
#   fail with "no CUDA device" / "Could not run ... with arguments from the 'CUDA' backend".
#   `-Wl,--no-as-needed -ltorch_cuda -ltorch` keeps them; the script checks the result with
#   readelf.
# The binaries carry no RPATH: LD_LIBRARY_PATH names torch's lib/ at run time. They also run
# `--backend tch` (CPU) wherever that torch and its CUDA libraries are installed.
#
# Environment: TORCH_VERSION (2.11.0), LIBTORCH_CUDA_DIR, DEST (.gpu/tch-cuda), PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${TORCH_VERSION:-2.11.0}
py=${PYTHON:-python3}
lt=${LIBTORCH_CUDA_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/libtorch-$version-cu130}
dest=${DEST:-.gpu/tch-cuda}

if [[ ! -f $lt/lib/libtorch_cuda.so || ! -d $lt/include/torch ]]; then
  echo "tch-cuda: fetching torch==$version (PyPI, cu130) into $lt" >&2
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  "$py" -m pip download -q --no-deps --no-cache-dir -d "$tmp" "torch==$version" >&2
  "$py" - "$tmp" "$lt.partial" <<'PY'
import glob, os, shutil, sys, zipfile
dl, out = sys.argv[1], sys.argv[2]
shutil.rmtree(out, ignore_errors=True)
with zipfile.ZipFile(glob.glob(f"{dl}/torch-*.whl")[0]) as z:
    for n in z.namelist():
        if n.endswith("/"):
            continue
        if n.startswith("torch/include/"):
            dest = os.path.join(out, "include", n[len("torch/include/"):])
        elif n.startswith("torch/lib/") and ".so" in n and "python" not in n:
            dest = os.path.join(out, "lib", os.path.basename(n))
        else:
            continue
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with z.open(n) as s, open(dest, "wb") as d:
            shutil.copyfileobj(s, d)
PY
  rm -rf "$lt"; mv "$lt.partial" "$lt"
fi

export LIBTORCH=$lt LIBTORCH_BYPASS_VERSION_CHECK=1 LIBTORCH_CXX11_ABI=1
unset LIBTORCH_USE_PYTORCH LIBTORCH_INCLUDE LIBTORCH_LIB
export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-Wl,--allow-shlib-undefined -C link-arg=-Wl,--no-as-needed -C link-arg=-ltorch_cuda -C link-arg=-ltorch -C link-arg=-Wl,--as-needed"
# Its own target folder: other flags and another libtorch than the CPU `tch` build. An explicit
# --target keeps RUSTFLAGS off build scripts and proc macros (they must not link torch).
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/tch-cuda}
triple=$(rustc -vV | sed -n 's/^host: //p')
features=(--target "$triple" --no-default-features --features tch)

cargo build --release -p benches -p bert-examples "${features[@]}" --bins --examples
# The parity and training tests in one binary (benches/tests/gpu.rs).
gpu_test=$(cargo test --release -p benches "${features[@]}" --test gpu --no-run --message-format=json \
  | "$py" -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "gpu":
        print(m["executable"])')

mkdir -p "$dest"
out=$CARGO_TARGET_DIR/$triple/release
strip -o "$dest/benches" "$out/benches"
strip -o "$dest/gpu-tests" "$gpu_test"
for e in pretrain classify forward; do strip -o "$dest/$e" "$out/examples/$e"; done
for f in "$dest"/*; do
  needed=$(readelf -d "$f" | grep NEEDED)
  for lib in libtorch_cuda.so libtorch_cpu.so libc10.so; do
    grep -q "\[$lib\]" <<<"$needed" || { echo "tch-cuda: $f does not load $lib" >&2; exit 1; }
  done
done
echo "tch-cuda: built against $(basename "$lt"): $(ls "$dest" | tr '\n' ' ')" >&2
echo "$dest"
