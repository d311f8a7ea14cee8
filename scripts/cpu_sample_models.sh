#!/usr/bin/env bash
# The bundled War and Peace and Linux models, trained on this project's 2-core CPU (issue 14).
#
#   bash scripts/cpu_sample_models.sh train     # both runs in the background, one torch thread each (~2 h)
#   bash scripts/cpu_sample_models.sh tune      # War and Peace: a new low-lr schedule from that run's best (80 min)
#   bash scripts/cpu_sample_models.sh tune-linux # Linux: the same with dropout 0.3 (110 min)
#   bash scripts/cpu_sample_models.sh finish    # float16 copies into sample_models/ and their cards
#   bash scripts/cpu_sample_models.sh finish wp # one of them (wp, linux or shakespeare: its card only)
#
# `train` starts both runs niced, each on one thread, with --snapshot-every for `rnnviz emergence`; the logs
# go to runs/<name>.log. `finish` takes each run's best checkpoint (lowest validation loss), stores it in
# float16 under sample_models/, and writes its card with scripts/model_card.py (test loss, the cells found,
# ablations, the explained fractions and when each cell emerged).
set -eu
BIN=${BIN:-.venv/bin}
DATA=${DATA:-../shared/data}
BUDGET=${BUDGET:-6600}
# test characters each card's ablations run over (the draws cost one pass of them each; 30000 on a busy CPU)
ABLATE_CHARS=${ABLATE_CHARS:-100000}
COMMON="--cell lstm --layers 2 --hidden 256 --batch 64 --seq-len 100 --lr 3e-3 --schedule cosine --warmup 200 \
--time-budget $BUDGET --eval-every 1000 --snapshot-every 250 --seed 1 --device cpu"
WP="$BIN/rnnviz train $DATA/war_and_peace.txt --out runs/wp-lstm-2x256 --dropout 0.1 $COMMON"
LINUX="$BIN/rnnviz train $DATA/linux_kernel.txt --out runs/linux-lstm-2x256 --dropout 0.0 $COMMON"
# A second schedule for War and Peace: its cosine had ended at 3e-4 with validation still falling, and a warm
# restart of the same run (resumed with a longer budget: lr back to 1.7e-3) diverged at step 13,745. A new run
# from its best weights with a low peak (6e-4 -> 6e-5) does not.
WP_TUNE="$BIN/rnnviz train $DATA/war_and_peace.txt --out runs/wp-ft --init-from runs/wp-lstm-2x256/best \
--dropout 0.1 --batch 64 --seq-len 100 --lr 6e-4 --schedule cosine --warmup 100 --time-budget 4900 --eval-every 500 --seed 2 --device cpu"

# Linux: the first run (no dropout) had validation flat at about 1.41 from step ~5,000 while training fell to
# 0.77 (it learned the training files by heart). A second schedule from its best weights with dropout 0.3 does not.
LINUX_TUNE="$BIN/rnnviz train $DATA/linux_kernel.txt --out runs/linux-ft --init-from runs/linux-lstm-2x256/best \
--dropout 0.3 --batch 64 --seq-len 100 --lr 1e-3 --schedule cosine --warmup 100 --time-budget 6500 --eval-every 500 --seed 2 --device cpu"

# The tiny Shakespeare model (trained earlier, no snapshots): `finish shakespeare` rewrites its card only.
TS="rnnviz train $DATA/tiny_shakespeare.txt --out runs/ts2 --cell lstm --layers 2 --hidden 128 --dropout 0.1 \
--batch 32 --seq-len 100 --lr 3e-3 --schedule cosine --max-steps 6000 --eval-every 500 --seed 1"

# AFTER: how the runs really ended, for the cards (the runs of 2 Dec were stopped with SIGTERM at about
# 3,600 s and resumed with a shorter budget to leave time for their cards: the cosine schedule moved on).
AFTER=${AFTER:-}
WP_AFTER=${WP_AFTER:-"# stopped with SIGTERM at 3,624 s of training (step 7,969), then resumed with a shorter budget:
rnnviz train ../shared/data/war_and_peace.txt --out runs/wp-lstm-2x256 --resume --time-budget 5400"}
LINUX_AFTER=${LINUX_AFTER:-"# stopped with SIGTERM at 3,494 s of training (step 8,387), then resumed with a shorter budget:
rnnviz train ../shared/data/linux_kernel.txt --out runs/linux-lstm-2x256 --resume --time-budget 5400"}

snapshots() {  # name run: the run's snapshots, or when they are gone the committed card's emergence section
  if [ -d "$2/snapshots" ]; then echo "$2"; return; fi
  mkdir -p "runs/cards/$1"
  git show "HEAD:sample_models/$1/README.md" > "runs/cards/$1/README.md"
  git show "HEAD:sample_models/$1/emergence.html" > "runs/cards/$1/emergence.html"
  echo "runs/cards/$1/README.md"
}

finish() {  # run name corpus command snapshots-run features...
  local run=$1 name=$2 corpus=$3 cmd=$4 snaps=$5; shift 5
  # The run's best weights in float16, or, when the run is gone, the bundled ones as they are (its card only).
  [ -d "$run/best" ] && "$BIN/python" -c "import sys, torch; from rnnviz.model.checkpoint import load_checkpoint, save_checkpoint; \
m = load_checkpoint(sys.argv[1]); meta = {k: v for k, v in m.meta.items() if k in ('train', 'data', 'device', 'amp', 'metrics')}; \
save_checkpoint(m, sys.argv[2], extra=meta, dtype=torch.float16)" "$run/best" "sample_models/$name"
  "$BIN/python" scripts/model_card.py "sample_models/$name" "$DATA/$corpus" --command "${cmd#"$BIN/"}${AFTER:+
$AFTER}" \
      --ablate-chars "$ABLATE_CHARS" --emergence "$snaps" --features "$@"
}

case ${1:-} in
  train)
    mkdir -p runs
    OMP_NUM_THREADS=1 nohup nice $WP > runs/wp.log 2>&1 &
    OMP_NUM_THREADS=1 nohup nice $LINUX > runs/linux.log 2>&1 &
    echo "training in the background: tail -f runs/wp.log runs/linux.log" ;;
  finish)
    # Both bundled models are the second schedules (runs/*-ft); their cells' emergence is the first runs' (from
    # their snapshots, or from the committed cards when those are gone: the second schedules keep none).
    WP_CMD="$WP
$WP_AFTER
# then a second schedule from its best weights (a warm restart of the run itself diverged):
${WP_TUNE#"$BIN/"}"
    [ "${2:-wp}" = wp ] && OMP_NUM_THREADS=1 finish runs/wp-ft war-and-peace-lstm-2x256 war_and_peace.txt "$WP_CMD" \
        "$(snapshots war-and-peace-lstm-2x256 runs/wp-lstm-2x256)" \
        in_quote column to_line_end word_pos sentence_start > runs/wp.card.log 2>&1 &
    LINUX_CMD="$LINUX
$LINUX_AFTER
# then a second schedule from its best weights, with dropout:
${LINUX_TUNE#"$BIN/"}"
    [ "${2:-linux}" = linux ] && OMP_NUM_THREADS=1 finish runs/linux-ft linux-lstm-2x256 linux_kernel.txt "$LINUX_CMD" \
        "$(snapshots linux-lstm-2x256 runs/linux-lstm-2x256)" \
        in_if brace_depth in_comment in_string paren_depth indent column to_line_end > runs/linux.card.log 2>&1 &
    [ "${2:-shakespeare}" = shakespeare ] && OMP_NUM_THREADS=1 "$BIN/python" scripts/model_card.py \
        sample_models/shakespeare-lstm-2x128 "$DATA/tiny_shakespeare.txt" --command "$TS" --ablate-chars 20000 \
        --features in_quote column to_line_end word_pos sentence_start > runs/shakespeare.card.log 2>&1 &
    wait
    tail -n 3 runs/*.card.log ;;
  tune)
    OMP_NUM_THREADS=1 nohup nice $WP_TUNE > runs/wp-ft.log 2>&1 &
    echo "tuning in the background: tail -f runs/wp-ft.log" ;;
  tune-linux)
    OMP_NUM_THREADS=1 nohup nice $LINUX_TUNE > runs/linux-ft.log 2>&1 &
    echo "tuning in the background: tail -f runs/linux-ft.log" ;;
  *) echo "usage: $0 train|tune|tune-linux|finish [wp|linux|shakespeare]" >&2; exit 2 ;;
esac
