#!/usr/bin/env bash
# Peak host memory of `pretrain` as the corpus grows 10×, loaded whole vs `--streaming`.
#
#   benches/stream_rss.sh [OUT.json]      (after a release build of the examples)
#
# The corpus is the Jargon File of the fixtures repeated 1× and 10× (1.7 MB → 17 MB); each run
# trains 20 steps of a 2-layer, hidden-64 model with all-MiniLM-L6-v2's tokenizer (no
# vocabulary training), batch 32, seq 128, on flex. Peak RSS is GNU time's maximum resident
# set size. Loaded whole, the documents, their tokens and every NSP pair are in memory;
# streamed, a shuffle buffer of 10,000 pairs and a few documents are.
set -euo pipefail
cd "$(dirname "$0")/.."
# Not named cpu-*.json: `benches compare` reads those as throughput results.
out=${1:-benches/results/stream-rss-cpu-2core.json}
bin=target/release/examples/pretrain
fixtures=${BERT_FIXTURES:-$(../shared/fixtures/fetch.sh)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for k in 1 10; do
  for _ in $(seq "$k"); do cat "$fixtures/data/corpus/jargon.txt"; echo; done > "$tmp/corpus-$k.txt"
done
rows=()
for k in 1 10; do
  for mode in memory streaming; do
    extra=(); [[ $mode == streaming ]] && extra=(--streaming)
    start=$(date +%s.%N)
    /usr/bin/time -f %M -o "$tmp/rss" "$bin" --corpus "$tmp/corpus-$k.txt" --paragraphs \
      --tokenizer "$fixtures/models/all-MiniLM-L6-v2" --hidden-size 64 --num-hidden-layers 2 \
      --num-attention-heads 2 --max-seq-length 128 --batch-size 32 --max-steps 20 \
      --eval-steps 1000 --save-steps 1000 --max-eval-samples 256 --quiet --json \
      --output-dir "$tmp/out-$mode-$k" "${extra[@]}" > "$tmp/log" 2> "$tmp/err" || { cat "$tmp/err"; exit 1; }
    wall=$(echo "$(date +%s.%N) - $start" | bc)
    rss_kb=$(tail -1 "$tmp/rss")
    mb=$(du -m "$tmp/corpus-$k.txt" | cut -f1)
    echo "$mode ×$k ($mb MB): peak RSS $((rss_kb / 1024)) MiB, ${wall}s"
    rows+=("{\"mode\": \"$mode\", \"corpus_multiple\": $k, \"corpus_mib\": $mb, \"peak_rss_mib\": $((rss_kb / 1024)), \"wall_s\": $wall}")
  done
done
{
  echo '{"machine": "'"$(nproc)"'-core '"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"'", "date": "'"$(date -u +%F)"'", "commit": "'"$(git rev-parse --short HEAD)"'",'
  echo ' "what": "pretrain peak RSS, 20 steps, corpus = the Jargon File ×1 and ×10, loaded whole vs --streaming",'
  echo ' "rows": ['
  (IFS=$',\n'; echo "  ${rows[*]}" | sed 's/},{/},\n  {/g')
  echo ' ]}'
} > "$out"
cat "$out"
