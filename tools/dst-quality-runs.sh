#!/usr/bin/env bash
# The dynamic-sparse-training quality comparison on the `medium` preset: static, SET, RigL and SRigL at 90% and 80%
# sparsity (ERK), RigL, SRigL, and at 90% static and SET, with separate Q, K and V budgets (dst_split_qkv), the smaller dense models with about the same number of block weights (n_embd 80 and 112), and dense
# medium, all with the same seed and schedule; then `nanosparse dst-quality` gathers them into a table, a CSV and
# docs/figures/dst-quality.png.
#
#   tools/dst-quality-runs.sh [ITERS] [JOBS] [THREADS]
#
# ITERS (default 1200, the preset's length): a shorter run scales the whole schedule with it (warm-up, lr decay,
# ΔT and the stop of the topology updates: ΔT = ITERS/12, stop at 3/4 of ITERS, so every run makes the same 8 updates
# at the same fractions of training as RigL's ΔT = 100 over 1,200). JOBS runs at a time (default 2), THREADS kernel
# threads each (default 1). Needs data/brown (`nanosparse prepare --corpus brown`) and the CLI built in Release. Run
# folders go to runs-dst/NAME; a finished run (its .done marker) is not run again.
set -euo pipefail
ITERS=${1:-1200}
JOBS=${2:-2}
THREADS=${3:-1}
B=${NANOSPARSE:-src/NanoSparse.Cli/bin/Release/net10.0/nanosparse}
OUT=${DST_RUNS:-runs-dst}
mkdir -p "$OUT"
S="--set max_iters=$ITERS --set lr_decay_iters=$ITERS --set warmup_iters=$(( (ITERS + 11) / 12 )) --set eval_interval=$(( ITERS >= 1200 ? 200 : ITERS / 3 ))"
D="--set dst_interval=$(( ITERS / 12 )) --set dst_drop_fraction=0.3 --set dst_stop=$(( ITERS * 3 / 4 ))"
E="--set sparsity_distribution=erk"
RUNS=(
  "s90-static $S --set sparsity=0.9 $E --set dst=static"
  "s90-rigl $S --set sparsity=0.9 $E --set dst=rigl $D"
  "s90-set $S --set sparsity=0.9 $E --set dst=set $D"
  "s90-srigl $S --set sparsity=0.9 $E --set dst=srigl $D"
  "s90-rigl-split $S --set sparsity=0.9 $E --set dst=rigl $D --set dst_split_qkv=true"
  "s90-srigl-split $S --set sparsity=0.9 $E --set dst=srigl $D --set dst_split_qkv=true"
  "s90-static-split $S --set sparsity=0.9 $E --set dst=static --set dst_split_qkv=true"
  "s90-set-split $S --set sparsity=0.9 $E --set dst=set $D --set dst_split_qkv=true"
  "dense-e80 $S --set n_embd=80"
  "s80-static $S --set sparsity=0.8 $E --set dst=static"
  "s80-rigl $S --set sparsity=0.8 $E --set dst=rigl $D"
  "s80-set $S --set sparsity=0.8 $E --set dst=set $D"
  "s80-srigl $S --set sparsity=0.8 $E --set dst=srigl $D"
  "s80-rigl-split $S --set sparsity=0.8 $E --set dst=rigl $D --set dst_split_qkv=true"
  "s80-srigl-split $S --set sparsity=0.8 $E --set dst=srigl $D --set dst_split_qkv=true"
  "dense-e112 $S --set n_embd=112"
  "dense-e256 $S"
)
run_one() {
  local name=$1; shift
  [ -f "$OUT/$name/.done" ] && return 0
  echo "start $name $(date -u +%H:%M:%S)"
  nice -n 10 "$B" train --config configs/medium.json --threads "$THREADS" --out "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1
  touch "$OUT/$name/.done"
  echo "done  $name $(date -u +%H:%M:%S)"
}
for r in "${RUNS[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
  # shellcheck disable=SC2086
  run_one $r &
done
wait
args=()
for r in "${RUNS[@]}"; do name=${r%% *}; args+=("$OUT/$name"); done
"$B" dst-quality "${args[@]}" --out docs/figures/dst-quality.png --csv docs/figures/dst-quality.csv \
  --title "medium, $ITERS iterations: final val loss against sparsity"
