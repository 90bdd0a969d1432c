#!/usr/bin/env bash
# GPU runs on a machine without a Rust toolchain or network: the binaries are built elsewhere
#   cargo build --release -p benches -p bert-examples --features wgpu,vulkan,fusion,autotune --examples --bins
# and carried in $BIN (benches, pretrain), with the Vulkan loader's .deb files in $GL.
# Run from the repository root; results go to $OUT (default benches/results/gpu).
# The `cuda` feature could not be built where these were made: cubecl-cuda's build downloads
# an LLVM bundle from GitHub, which that machine cannot reach (as for the `cpu` backend); `tch`
# links the CPU libtorch 2.9 there, and the GPU machine's PyTorch (2.11) does not match it.
#
#   benches/gpu.sh check              # the GPU, PyTorch, Vulkan; one tiny step per backend
#   benches/gpu.sh bench LABEL        # f32 tiny/small/base at s128 b8/b32 and s512 b8 (+ PyTorch)
#   benches/gpu.sh half LABEL         # f16/bf16 on vulkan and PyTorch autocast; torch.compile rows
#   benches/gpu.sh pretrain STEPS     # the pretrain example on vulkan (Jargon File, 4L/256H)
set -uo pipefail
BIN=${BIN:-.gpu}
GL=${GL:-.gl}
OUT=${OUT:-benches/results/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

# Binaries travel compressed (xz).
for f in "$BIN"/*.xz; do
  [[ -e $f && ! -x ${f%.xz} ]] || continue
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$f" "${f%.xz}"
  chmod +x "${f%.xz}"
done
if compgen -G "$GL/*.deb" >/dev/null && ! ldconfig -p | grep -q libvulkan.so.1; then
  for f in "$GL"/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
  [[ -f $icd ]] && export VK_DRIVER_FILES=$icd && break
done

bench() { "$BIN/benches" run --pytorch-device cuda "$@"; }
what=${1:-check}
label=${2:-GPU}
case $what in
  check)
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    python3 -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__, torch.cuda.get_device_name())'
    echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}"
    bench --backend wgpu,vulkan --configs tiny --seq 16 --batch 2 --warmup 1 --iters 1 --label "$label" \
      --out "$OUT/check.json"
    start=$(date +%s%N)
    "$BIN/pretrain" --backend ${PRETRAIN_BACKEND:-vulkan} --corpus "${CORPUS:-$BIN/jargon.txt}" --paragraphs \
      --output-dir /tmp/pretrain-check --max-steps 60 --logging-steps 20 --eval-steps 60 --save-steps 60 --json \
      | head -c 600
    echo; echo "pretrain 60 steps: $(( ($(date +%s%N) - start) / 1000000 )) ms (tokenizer training and one evaluation included)"
    ;;
  bench)
    for backend in vulkan wgpu; do
      args=(--backend "$backend" --configs tiny,small,base --warmup 2 --iters 10 --budget-s 10 --label "$label")
      [[ $backend == vulkan ]] && args+=(--pytorch)
      bench "${args[@]}" --seq 128 --batch 8,32 --out "$OUT/$backend-s128.json"
      bench "${args[@]}" --seq 512 --batch 8 --out "$OUT/$backend-s512.json"
    done
    ;;
  half)
    for dtype in f16 bf16; do
      bench --backend vulkan --configs small,base --seq 128 --batch 32 --dtype $dtype --pytorch \
        --warmup 2 --iters 10 --budget-s 10 --label "$label" --out "$OUT/vulkan-$dtype.json"
    done
    bench --backend vulkan --configs small,base --seq 128 --batch 32 --pytorch --pytorch-compile \
      --warmup 2 --iters 10 --budget-s 10 --label "$label" --out "$OUT/vulkan-compile.json"
    ;;
  pretrain)
    steps=${2:-3000}
    shift 2
    timeout "${PRETRAIN_TIMEOUT:-540}" "$BIN/pretrain" --backend ${PRETRAIN_BACKEND:-vulkan} \
      --corpus "${CORPUS:-$BIN/jargon.txt}" --paragraphs --output-dir /tmp/pretrain --max-steps "$steps" --eval-steps $((steps / 6)) \
      --logging-steps 50 --save-steps "$steps" --json "$@" >"$OUT/pretrain.json"
    rc=$?
    cp /tmp/pretrain/log.jsonl "$OUT/pretrain-log.jsonl" 2>/dev/null
    cat "$OUT/pretrain.json" | head -c 2000
    exit $rc
    ;;
  *)
    echo "unknown: $what" >&2
    exit 2
    ;;
esac
