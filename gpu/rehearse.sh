#!/usr/bin/env bash
# A rehearsal, here on the CPU, of what the GPU run does with the GPU machine's own torch: no
# GPU and no device time. The H100/H200 machines hold torch 2.11.0+cu130 in /opt/torch/.venv;
# PyPI's torch 2.11.0 wheel is that build, and its nvidia-* wheels are the CUDA 13 libraries it
# loads (4.6 GB installed). This installs them in a virtual environment (kept in $VENV), builds
# the tch-cuda binaries against that torch (gpu/tch-cuda.sh, into $OUT/tch-cuda), and runs what
# gpu/run.sh runs with them, on that torch's CPU device:
#   1. the binaries find every library they need (ldd) with LD_LIBRARY_PATH = torch's lib/, as
#      gpu/run.sh sets it;
#   2. `--backend tch-cuda` with no NVIDIA driver refuses with a clear error;
#   3. one training, inference and pretraining step on `--backend tch`, profiled;
#   4. the GPU test binary's parity and training tests on `tch` (gpu/run.sh's `tests` stage);
#   5. one step of each PyTorch side gpu/run.sh's `bench` stage asks for (benches/pytorch_bench.py
#      under that python): f32 with sdpa and eager attention, bf16 autocast (`--mixed`), gradient
#      checkpointing at two batches, the TF32 flag;
#   6. the README's main job on `--backend tch`, its held-out accuracy printed.
# The CubeCL binaries are not rehearsed here: `cuda` is, on a stand-in driver, by
# gpu/rehearse-cuda.sh; `vulkan` runs on lavapipe once CubeCL's SPIR-V compiler has its
# shared-memory fix (gpu/cubecl-spirv.sh).
#
#   gpu/rehearse.sh          # ~15 min the first time (download, build), ~3 min after
#
# Environment: VENV (~/.cache/torch-2.11.0-venv), OUT (/tmp/gpu-rehearsal), BERT_FIXTURES
# (../shared/fixtures/fetch.sh's cache, for the main job).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/torch-2.11.0-venv}
out=${OUT:-/tmp/gpu-rehearsal}
mkdir -p "$out"
step() { printf '\n=== %s\n' "$*"; }

if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c 'import torch, transformers' 2>/dev/null; then
  step "torch 2.11.0 (cu130) and its CUDA libraries into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch==2.11.0 transformers==5.24.0 safetensors numpy
fi
py=$venv/bin/python
torch=$("$py" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
"$py" -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)'

step "tch-cuda binaries against $torch"
# The venv's torch/ folder holds include/ and lib/: the libtorch gpu/tch-cuda.sh compiles against.
LIBTORCH_CUDA_DIR=$torch DEST=$out/tch-cuda gpu/tch-cuda.sh >/dev/null
bin=$out/tch-cuda
export LD_LIBRARY_PATH=$torch/lib

step "1. every library found"
for f in "$bin"/*; do
  if ldd "$f" | grep 'not found'; then
    echo "$f: a library is missing" >&2
    exit 1
  fi
done
echo "ok: $(ls "$bin" | tr '\n' ' ')"

step "2. tch-cuda without a driver"
if msg=$("$bin/benches" run --backend tch-cuda --configs tiny --seq 16 --batch 2 --iters 1 \
  --out "$out/tch-cuda.json" 2>&1); then
  echo "$msg"
  echo "tch-cuda ran without an NVIDIA driver?" >&2
  exit 1
fi
echo "$msg"
grep -q "NVIDIA driver" <<<"$msg"

step "3. one step of each workload on tch"
"$bin/benches" run --backend tch --configs tiny --seq 16 --batch 2 --warmup 1 --iters 1 \
  --workloads train,infer,pretrain --profile --label rehearsal --out "$out/tch.json" | tail -4

step "4. the GPU tests on tch"
BERT_TEST_BACKEND=tch "$bin/gpu-tests" --skip real_all_minilm_l6_v2_matches_hf --test-threads 1 \
  >"$out/tests-tch.log" 2>&1 || {
  grep -E 'FAILED|panicked' "$out/tests-tch.log" | head
  exit 1
}
grep -E '^test result' "$out/tests-tch.log"

step "5. the benchmark's PyTorch side under this torch"
one=(--backend none --python "$py" --configs tiny --seq 16 --warmup 1 --iters 1 --label rehearsal
  --pytorch)
"$bin/benches" run "${one[@]}" --batch 2 --pytorch-attention sdpa,eager --out "$out/torch-f32.json" | tail -4
"$bin/benches" run "${one[@]}" --batch 2 --dtype bf16 --mixed --out "$out/torch-bf16-mixed.json" | tail -2
"$bin/benches" run "${one[@]}" --batch 2,4 --workloads train --gradient-checkpointing \
  --out "$out/torch-ckpt.json" | tail -4
"$bin/benches" run "${one[@]}" --batch 2 --pytorch-tf32 on --out "$out/torch-tf32.json" | tail -2

step "6. the README's main job on tch"
export BERT_FIXTURES=${BERT_FIXTURES:-$(../shared/fixtures/fetch.sh)}
"$bin/classify" --backend tch --group-by-length --output-dir "$out/classify" >"$out/classify.log" 2>&1
grep -E 'eval_(accuracy|loss) ' "$out/classify.log"
echo "rehearsal passed; logs and results in $out"
