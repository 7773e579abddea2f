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
#   tools/attention-quality-runs.sh recall  [ITERS] [JOBS] [THREADS]
#
# quality: configs/brown-1k.json on data/brown for ITERS iterations (default 600, the preset's length; a shorter run
# scales warm-up and lr decay with it), then `compare-runs` writes docs/figures/attention-quality.png.
# probe: a smaller model (2 layers, 64 wide, 2 heads of 32, batch 8, lr 2e-3; block 1024) with each pattern trained
# for ITERS iterations on probe data (data/brown-probe-k1v2, written by `nanosparse probe-data` if missing): a record
# "&k:VV" (a one-letter key, two digits) starts every 16 tokens on average over the Brown text and is repeated (the
# query, whose two digits are the answer) 8 to 600 tokens later; a key is not reused while its query is pending, so a
# query copies what followed the last "&k:" (an induction-head task). Then `probe-compare` measures every model on the
# same records written into clean Brown val text (4 distractor records with other keys each) and writes
# docs/figures/attention-probe.png and .csv.
# recall: the purely synthetic associative-recall task (`nanosparse recall-data`: 128 reserved key tokens, 64 value
# tokens, a record "KV" every ~8 tokens, its query "KV" 0 to block-3 tokens later, log-uniform; data/recall-BLOCK if
# missing), a 2-layer, 64-wide model with 2 heads and RoPE (rope=true), lr 1e-3, block ATTN_RECALL_BLOCK (default
# 256), warm-up 100; patterns at block 256 (key blocks of 16; pair shares counted in Python, not by bench): window 32
# (23.4% of the causal pairs), top-k own block
# + 1 (18.3%), NSA 16/16, top 1, window 16 (about 36%, three branches), block local 2 + global 1 (29.2%); then
# `probe-compare --probe recall` writes docs/figures/attention-recall.png and .csv. Other blocks keep key blocks of 16.
# JOBS runs at a time (default 2), THREADS kernel threads each (default 1). Needs data/brown
# (`nanosparse prepare --corpus brown`) and the CLI built in Release. Run folders go to runs-attn/NAME; a finished run
# (its .done marker) is not run again, and a run another invocation of this script has claimed (NAME.claim) is left
# to it (two invocations may share the list; remove a stale NAME.claim after a crash).
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
  "topk --set attention=topk --set attn_block=32 --set attn_topk=4"
  "nsa --set attention=nsa --set attn_block=32 --set attn_stride=32 --set attn_topk=2 --set attn_window=64"
  "block --set attention=block --set attn_block=32 --set attn_local=4 --set attn_global=1"
)
run_one() {
  local name=$1; shift
  [ -f "$OUT/$name/.done" ] && return 0
  mkdir "$OUT/$name.claim" 2>/dev/null || return 0
  echo "start $name $(date -u +%H:%M:%S)"
  nice -n 10 "$B" train --config "$CONFIG" --threads "$THREADS" --out "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1
  touch "$OUT/$name/.done"
  rmdir "$OUT/$name.claim"
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
    "$B" compare-runs "${args[@]}" --out docs/figures/attention-quality.png --from-step $(( ITERS / 3 )) \
      --title "Brown, block 1024, $ITERS iterations: val loss per attention pattern"
    ;;
  probe)
    PDATA=${ATTN_PROBE_DATA:-data/brown-probe-k1v2}
    FORMAT="--key-length 1 --value-length 2"
    # shellcheck disable=SC2086
    [ -f "$PDATA/meta.json" ] || "$B" probe-data --data data/brown --out "$PDATA" --every 16 --min-distance 8 --max-distance 600 $FORMAT
    M="--set n_layer=2 --set n_embd=64 --set n_head=2 --set batch_size=8 --set learning_rate=2e-3 --set min_lr=2e-4"
    for p in "${PATTERNS[@]}"; do
      while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
      # shellcheck disable=SC2086
      run_one p-$p --set dataset=$PDATA $M $S &
    done
    wait
    args=()
    for p in "${PATTERNS[@]}"; do name=${p%% *}; [ -f "$OUT/p-$name/.done" ] && args+=("$name=$OUT/p-$name"); done
    # shellcheck disable=SC2086
    nice -n 10 "$B" probe-compare "${args[@]}" --threads "$THREADS" --data data/brown --distances 16 64 128 256 384 512 $FORMAT \
      --probe-samples 64 --out docs/figures/attention-probe.png --csv docs/figures/attention-probe.csv \
      --title "retrieval probe after $ITERS iterations on probe data (block 1024): exact accuracy per pattern"
    ;;
  recall)
    RB=${ATTN_RECALL_BLOCK:-256}
    RDATA=${ATTN_RECALL_DATA:-data/recall-$RB}
    [ -f "$RDATA/meta.json" ] || "$B" recall-data --out "$RDATA" --keys 128 --values 64 --every 8 --min-distance 0 \
      --max-distance $(( RB - 3 )) --reuse-distance "$RB" --train-tokens 8000000 --val-tokens 300000
    # the settings of the README's recall runs: every run saves its last checkpoint (always_save_checkpoint)
    M="--set block_size=$RB --set n_layer=2 --set n_embd=64 --set n_head=2 --set batch_size=8 --set learning_rate=1e-3"
    M="$M --set min_lr=1e-4 --set rope=true --set always_save_checkpoint=true --set eval_iters=4 --set log_interval=25"
    SR="--set max_iters=$ITERS --set lr_decay_iters=$ITERS --set warmup_iters=100 --set eval_interval=500"
    W=$(( RB / 8 ))
    RPATTERNS=(
      "dense"
      "window --set attention=window --set attn_window=$W"
      "topk --set attention=topk --set attn_block=16 --set attn_topk=1"
      "nsa --set attention=nsa --set attn_block=16 --set attn_stride=16 --set attn_topk=1 --set attn_window=16"
      "block --set attention=block --set attn_block=16 --set attn_local=2 --set attn_global=1"
    )
    for p in "${RPATTERNS[@]}"; do
      while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
      # shellcheck disable=SC2086
      run_one r$RB-$p --set dataset=$RDATA $M $SR &
    done
    wait
    args=()
    for p in "${RPATTERNS[@]}"; do name=${p%% *}; [ -f "$OUT/r$RB-$name/.done" ] && args+=("$name=$OUT/r$RB-$name"); done
    # shellcheck disable=SC2086
    nice -n 10 "$B" probe-compare "${args[@]}" --probe recall --threads "$THREADS" --data "$RDATA" \
      --distances 0 4 16 $W $(( 2 * W )) $(( RB / 2 )) $(( RB - 3 )) --probe-samples 128 \
      --out docs/figures/attention-recall.png --csv docs/figures/attention-recall.csv \
      --title "associative recall after $ITERS iterations (block $RB, RoPE): exact accuracy per pattern"
    ;;
  *) echo "unknown mode $MODE (quality, probe or recall)" >&2; exit 2 ;;
esac
