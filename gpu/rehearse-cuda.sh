#!/usr/bin/env bash
# A rehearsal, here on the CPU, of what gpu/run.sh does with Burn's `cuda` backend: no GPU and
# no device time. A stand-in for NVIDIA's driver library (gpu/fakecuda.c, built here into
# libcuda.so.1 and found through LD_LIBRARY_PATH, where cudarc looks for the driver) reports one
# H100 and keeps "device" memory in host memory; it runs no kernel, so every number the programs
# print is meaningless. What it checks is what the driver checks before a kernel runs:
#   * every module CubeCL's LLVM backend compiles (Burn's kernels, its fused ones, autotune's
#     matmul candidates, ours in bert::cube_kernels) is assembled by NVIDIA's ptxas 13.0 for the
#     target it names (gpu/ptxas.sh), as the 13.0 driver assembles it on load; a module ptxas
#     rejects fails the program with CUDA_ERROR_INVALID_PTX, as it would there;
#   * every launch has the block shape the kernel was compiled for (its `.reqntid`) and fits an
#     H100: threads a block, grid, the registers ptxas allotted, static + dynamic shared memory
#     against the limit the program raised (cuFuncSetAttribute).
# Stages, as gpu/run.sh's on cuda, each run with one warm-up and one timed step:
#   check   one tiny training and inference step, f32, bf16 mixed and pure (what CI runs)
#   bench   gpu/run.sh's cuda rows: tiny/small/base s128 b32 and s512 b8, f32, bf16 mixed and
#           pure; BERT-base s512 with gradient checkpointing; the composed-kernel rows, profiled
#   tests   the GPU test binary on cuda (parity, training): its assertions fail here (nothing
#           is computed), what counts is that no module or launch is refused
#
#   gpu/rehearse-cuda.sh [check|bench|tests|all]     # default check; all: ~12 min on 2 cores
#
# It fails when ptxas rejects a module, a launch is refused, a program names a CUDA error, or a
# program panics anywhere but in CubeCL's throughput probe: the probe launches one kernel with a
# loop count that it doubles until the kernel takes 20 ms, which a kernel that never runs never
# does, and the count overflows its u32 (cubecl-core's scalar.rs; the probe's thread catches it;
# on a GPU the kernel's time grows with the count).
#
# Environment: BIN, the folder with the `benches` and `gpu-tests` binaries (default: gpu/pack.sh's
# .gpu/cubecl.tar.xz, unpacked into REHEARSAL_DIR: what a GPU session carries; CI passes its own
# build's folder, whose test binary it does not use); REHEARSAL_DIR, emptied first
# (/tmp/cuda-rehearsal); CUDA_PATH (libdevice; default gpu/libdevice.sh's).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
what=${1:-check}
out=${REHEARSAL_DIR:-/tmp/cuda-rehearsal}
# Emptied first: only a folder an earlier rehearsal made (or an empty one).
if [[ -d $out && -n $(ls -A "$out") && ! -e $out/driver.log ]]; then
  echo "$out is not a rehearsal's folder (no driver.log): set REHEARSAL_DIR" >&2
  exit 1
fi
rm -rf "$out"
mkdir -p "$out/driver"
step() { printf '\n=== %s (%ds)\n' "$*" "$SECONDS"; }

bin=${BIN:-}
if [[ -z $bin ]]; then
  # Unpacked outside .gpu/, which is carried to the GPU machine whole (380 MB unpacked).
  [[ -f .gpu/cubecl.tar.xz ]] || { echo "no .gpu/cubecl.tar.xz: run gpu/pack.sh, or set BIN" >&2; exit 1; }
  tar -xJf .gpu/cubecl.tar.xz -C "$out"
  bin=$out/cubecl
fi
bin=$(cd "$bin" && pwd)

cc -shared -fPIC -O2 -Wall -Wextra -o "$out/driver/libcuda.so.1" gpu/fakecuda.c -lpthread
ln -sf libcuda.so.1 "$out/driver/libcuda.so"
export LD_LIBRARY_PATH=$out/driver${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
FAKECUDA_PTXAS=$(gpu/ptxas.sh)
: >"$out/driver.log"
# The driver's JIT cache, empty at first as on a fresh GPU machine.
export FAKECUDA_PTXAS FAKECUDA_LOG=$out/driver.log FAKECUDA_JIT_CACHE=$out/jit
mkdir -p "$FAKECUDA_JIT_CACHE"
CUDA_PATH=${CUDA_PATH:-$(gpu/libdevice.sh)}
export CUDA_PATH
# Autotune's choices for the stand-in H100 (its timings are made up) in a cache file of their
# own, target/environment/cuda-rehearsal-PID.db, removed at the end: nothing a real GPU run
# (or another rehearsal) reads.
export CUBECL_ENVIRONMENT=cuda-rehearsal-$$
trap 'rm -f "$root"/target/environment/$CUBECL_ENVIRONMENT.db*' EXIT
export RUST_BACKTRACE=1
failed=0

# bench NAME ARGS...: one call of the benchmark program on cuda; it must exit 0.
bench() {
  local name=$1 start=$SECONDS
  shift
  step "bench $name: $*"
  if "$bin/benches" run --backend cuda --warmup 1 --iters 1 --budget-s 1 --label rehearsal \
    --out "$out/$name.json" "$@" >"$out/$name.md" 2>"$out/$name.log"; then
    { grep -E '^\| ' "$out/$name.md" || true; } | cut -d'|' -f3-5 | tail -n +2 | sed 's/^/  /'
    echo "  $((SECONDS - start)) s"
  else
    echo "FAILED: exit $? (log: $out/$name.log)"
    tail -5 "$out/$name.log"
    failed=1
  fi
}

check() {
  bench check-f32 --configs tiny --seq 16 --batch 2
  bench check-bf16-mixed --configs tiny --seq 16 --batch 2 --dtype bf16 --mixed
  bench check-bf16 --configs tiny --seq 16 --batch 2 --dtype bf16
}

benches() {
  bench s128 --configs tiny,small,base --seq 128 --batch 32
  bench s128-bf16-mixed --configs tiny,small,base --seq 128 --batch 32 --dtype bf16 --mixed
  bench s512 --configs tiny,small,base --seq 512 --batch 8
  bench s512-ckpt --configs base --workloads train --seq 512 --batch 8,32 --gradient-checkpointing
  bench s128-kernels --configs tiny,base --workloads train --seq 128 --batch 32 \
    --composed-optimizer --composed-layers --profile
  bench s128-bf16 --configs tiny,small,base --seq 128 --batch 32 --dtype bf16
  bench s512-bf16 --configs tiny,small,base --seq 512 --batch 8 --dtype bf16
}

tests() {
  step "tests on cuda (their assertions fail: nothing is computed)"
  BERT_TEST_BACKEND=cuda "$bin/gpu-tests" --skip real_all_minilm_l6_v2_matches_hf \
    --skip fill_mask_matches_hf_pipeline --test-threads 1 >"$out/tests.log" 2>&1 || true
  grep -E '^test result' "$out/tests.log" | sed 's/^/  /' || echo "  no test result: the binary died"
}

case $what in
  check) check ;;
  bench) benches ;;
  tests) tests ;;
  all) check; benches; tests ;;
  *) echo "unknown: $what (check, bench, tests, all)" >&2; exit 2 ;;
esac

step "summary"
kernels=$(grep -c '^module .* function ' "$out/driver.log" || true)
cached=$(grep -c '^module .* function .*(JIT cache)' "$out/driver.log" || true)
rejected=$(grep '^module .* rejected' "$out/driver.log" || true)
refused=$(grep 'REFUSED' "$out/driver.log" || true)
errors=$(grep -l 'CUDA_ERROR\|fakecuda:' "$out"/*.log 2>/dev/null || true)
# Panics, each with its message and backtrace on one line, but the tests' assertions and the
# throughput probe's (see the header): at cubecl-core's scalar.rs:78 on the device thread, and
# through cubecl_std::throughput where the backtrace has frames (a stripped binary's has none).
panics=$(awk '/panicked at/ { if (p != "") print p; p = $0; next }
  p != "" && (/^note: / || /^$/ || /^test /) { print p; p = ""; next }
  p != "" { p = p " " $0 }
  END { if (p != "") print p }' "$out"/*.log |
  awk '!(/^thread .DSD-[0-9-]*. .* panicked at .*cubecl-core-0\.11\.3\/src\/frontend\/scalar\.rs:78:/ &&
    (/cubecl_std::throughput/ || !/ 0: /)) && !/panicked at benches\/tests\//' | cut -c1-300 || true)
echo "$kernels kernels loaded, $((kernels - cached)) assembled by ptxas $("$FAKECUDA_PTXAS" --version | grep -o 'V[0-9][0-9.]*'), $cached found assembled (the JIT cache)"
echo "rejected modules: $(printf '%s' "$rejected" | grep -c . || true); refused launches: $(printf '%s' "$refused" | grep -c . || true)"
[[ -z $rejected ]] || { echo "$rejected" | head; failed=1; }
[[ -z $refused ]] || { echo "$refused" | head; failed=1; }
[[ -z $errors ]] || { echo "CUDA errors in: $errors"; failed=1; }
[[ -z $panics ]] || { echo "panics:"; echo "$panics" | head; failed=1; }
{ grep '^launch ' "$out/driver.log" || true; } | awk '{print $2}' | sed -E 's/_[0-9a-f]{8}$//' | sort -u >"$out/kernels.txt"
echo "$(wc -l <"$out/kernels.txt") kernel families launched ($out/kernels.txt); logs in $out"
((failed == 0)) && echo "rehearsal passed" || echo "rehearsal FAILED"
exit $failed
