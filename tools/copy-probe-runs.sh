#!/usr/bin/env bash
# Issue 20's copying probe: the attention patterns trained on the same copying data with the same schedule, then
# `probe-compare --probe copy` (copy accuracy against distance per pattern) writes docs/figures/attention-copy.png
# and .csv.
#
#   tools/copy-probe-runs.sh [STAGE1_ITERS] [STAGE2_ITERS] [JOBS] [THREADS]
#
# Model (configs/copy-probe.json): 2 layers, 64 wide, 2 heads of 32, RoPE, lr 1e-3 (min 1e-4), block 256.
# Patterns at block 256 (key blocks of 16, as the recall runs): window 32, top-k own block + 1, NSA 16/16 top 1
# window 16, block local 2 + global 1. Every pattern follows the same three steps (same seed 1337, same batches):
#   0. a block-256 model with the pattern (one iteration, so that the later stages keep its 256 positions);
#   1. STAGE1_ITERS (default 2000) at block 64, batch 16, on data/copy-a16: a run of 2-16 distinct symbols out of 16
#      and its immediate repeat (no fillers), where a 2-layer model learns the copy (induction) quickly;
#   2. STAGE2_ITERS (default 1000, warm-up 50) at block 256, batch 8, on data/copy-a16r8: copy distances 2-250
#      log-uniform, a run of min(D, 8) symbols, fillers '.' up to D, then the run again.
# From scratch at block 256, or on runs over 64-256 symbols, the same models stayed at chance in 1,000-4,000
# iterations (README, "Copying probe"). JOBS runs at a time (default 2), THREADS kernel threads each (default 1).
# Run folders go to runs-copy/NAME-s0, -s1, -s2 (COPY_RUNS), the figure to COPY_FIGURE.png/.csv; another seed:
# COPY_CONFIG=a copy of the config with another "seed". A finished stage (its .done marker) is not run again.
set -euo pipefail
S1=${1:-2000}
S2=${2:-1000}
JOBS=${3:-2}
THREADS=${4:-1}
B=${NANOSPARSE:-src/NanoSparse.Cli/bin/Release/net10.0/nanosparse}
OUT=${COPY_RUNS:-runs-copy}
CONFIG=${COPY_CONFIG:-configs/copy-probe.json}
FIGURE=${COPY_FIGURE:-docs/figures/attention-copy}
mkdir -p "$OUT"
[ -f data/copy-a16/meta.json ] || "$B" copy-data --out data/copy-a16 --alphabet 16 --min-distance 2 --max-distance 16 \
  --train-tokens 2000000 --val-tokens 100000
[ -f data/copy-a16r8/meta.json ] || "$B" copy-data --out data/copy-a16r8 --alphabet 16 --run-length 8 --min-distance 2 \
  --max-distance 250
PATTERNS=(
  "dense"
  "window --set attention=window --set attn_window=32"
  "topk --set attention=topk --set attn_block=16 --set attn_topk=1"
  "nsa --set attention=nsa --set attn_block=16 --set attn_stride=16 --set attn_topk=1 --set attn_window=16"
  "block --set attention=block --set attn_block=16 --set attn_local=2 --set attn_global=1"
)
stage() {
  local dir=$1; shift
  [ -f "$dir/.done" ] && return 0
  nice -n 10 "$B" train --config "$CONFIG" --threads "$THREADS" --out "$dir" "$@" > "$dir.log" 2>&1
  touch "$dir/.done"
}
run_one() {
  local name=$1; shift
  echo "start $name $(date -u +%H:%M:%S)"
  stage "$OUT/$name-s0" --set dataset=data/copy-a16r8 --set max_iters=1 --set eval_interval=1 --set eval_iters=1 "$@"
  stage "$OUT/$name-s1" --set init_from="$OUT/$name-s0" --set dataset=data/copy-a16 --set block_size=64 --set batch_size=16 \
    --set max_iters="$S1" --set lr_decay_iters="$S1" --set eval_interval=500
  stage "$OUT/$name-s2" --set init_from="$OUT/$name-s1" --set dataset=data/copy-a16r8 \
    --set max_iters="$S2" --set lr_decay_iters="$S2" --set warmup_iters=50 --set eval_interval=500
  echo "done  $name $(date -u +%H:%M:%S)"
}
for p in "${PATTERNS[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
  # shellcheck disable=SC2086
  run_one $p &
done
wait
args=()
for p in "${PATTERNS[@]}"; do name=${p%% *}; [ -f "$OUT/$name-s2/.done" ] && args+=("$name=$OUT/$name-s2"); done
nice -n 10 "$B" probe-compare "${args[@]}" --probe copy --threads "$THREADS" --data data/copy-a16r8 \
  --distances 2 4 8 16 32 64 128 --probe-samples 256 \
  --out "$FIGURE.png" --csv "$FIGURE.csv" \
  --title "copying probe (block 256, RoPE, $S1 + $S2 iterations): accuracy per attention pattern"
