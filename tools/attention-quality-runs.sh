#!/usr/bin/env bash
# Issue 20's quality figures at block 1024: val loss of the five attention patterns on Brown, and the retrieval
# probe learned per pattern. Every pattern's parameters are chosen so that it computes about a quarter of the
# T(T+1)/2 causal query-key pairs at T = 1024 (exact key counts per query, NSA's three branches summed):
#   window 128                                  23.4%
#   block 32, local 4, global 1                 26.2%
#   topk: own block + top 4 blocks of 32        26.2%
#   nsa: blocks of 32 every 32, top 2, window 64 30.3%  (compressed 3.0% + selected 15.1% + window 12.1%)
# All runs use the preset's seed (1337), so they see the same batches.
#
#   tools/attention-quality-runs.sh quality [ITERS] [JOBS] [THREADS]
#   tools/attention-quality-runs.sh probe   [ITERS] [JOBS] [THREADS]
#
# quality: configs/brown-1k.json on data/brown for ITERS iterations (default 600, the preset's length; a shorter run
# scales warm-up and lr decay with it), then `compare-runs` writes docs/figures/attention-quality.png.
# probe: the same model trained on probe data (see PROBE_* below; written by `nanosparse probe-data` if missing),
# then `eval --probe retrieval` per pattern and docs/figures/attention-probe.png.
# JOBS runs at a time (default 2), THREADS kernel threads each (default 1). Needs data/brown
# (`nanosparse prepare --corpus brown`) and the CLI built in Release. Run folders go to runs-attn/NAME; a finished run
# (its .done marker) is not run again.
set -euo pipefail
MODE=${1:?quality or probe}
ITERS=${2:-600}
JOBS=${3:-2}
THREADS=${4:-1}
B=${NANOSPARSE:-src/NanoSparse.Cli/bin/Release/net10.0/nanosparse}
OUT=${ATTN_RUNS:-runs-attn}
CONFIG=${ATTN_CONFIG:-configs/brown-1k.json}
mkdir -p "$OUT"
S="--set max_iters=$ITERS --set lr_decay_iters=$ITERS --set warmup_iters=$(( (ITERS + 11) / 12 )) --set eval_interval=$(( ITERS / 3 ))"
PATTERNS=(
  "dense"
  "window --set attention=window --set attn_window=128"
  "block --set attention=block --set attn_block=32 --set attn_local=4 --set attn_global=1"
  "topk --set attention=topk --set attn_block=32 --set attn_topk=4"
  "nsa --set attention=nsa --set attn_block=32 --set attn_stride=32 --set attn_topk=2 --set attn_window=64"
)
run_one() {
  local name=$1; shift
  [ -f "$OUT/$name/.done" ] && return 0
  echo "start $name $(date -u +%H:%M:%S)"
  nice -n 10 "$B" train --config "$CONFIG" --threads "$THREADS" --out "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1
  touch "$OUT/$name/.done"
  echo "done  $name $(date -u +%H:%M:%S)"
}
case "$MODE" in
  quality)
    DATA=${ATTN_DATA:-data/brown}
    for p in "${PATTERNS[@]}"; do
      while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
      # shellcheck disable=SC2086
      run_one q-$p --set dataset=$DATA $S &
    done
    wait
    args=()
    for p in "${PATTERNS[@]}"; do name=${p%% *}; args+=("$name=$OUT/q-$name"); done
    "$B" compare-runs "${args[@]}" --out docs/figures/attention-quality.png \
      --title "Brown, block 1024, $ITERS iterations: val loss per attention pattern"
    ;;
  *) echo "unknown mode $MODE (quality or probe)" >&2; exit 2 ;;
esac
