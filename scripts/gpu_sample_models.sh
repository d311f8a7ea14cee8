#!/usr/bin/env bash
# One device call that trains the bundled sample models concurrently on one GPU (issue 7).
#
# Run from the repository root, on the device, with the corpora carried in ./data (gitignored):
#   mkdir -p data && cp ../shared/data/*.txt data/            # here, before the call
#   run(command="bash scripts/gpu_sample_models.sh", carry=["data"], timeout_s=600)
# Tested on CPU with tiny sizes:  DEVICE=cpu BUDGET=5 SCALE=tiny OUT=/tmp/o bash scripts/gpu_sample_models.sh
#
# Each model trains with --time-budget BUDGET seconds; then each is evaluated on its 5% test split
# (one exact stream), converted to float16 weights and packed with its log, samples and eval JSON as
# $OUT/<name>.tar. The benchmarks' output goes to $OUT/bench.txt. At most 8 files come back.
#
# SET=modern trains issue 30's comparison instead: minGRU 3x160, Mamba 4x176, sLSTM 2x288 and the LSTM 2x256
# (0.88-0.90 M parameters each) on War and Peace and on the Linux corpus, the settings of the CPU runs
# (README "Modern recurrent models"); then `scripts/modern_table.py runs/gpu/*` measures them.
set -u
OUT=${OUT:?set OUT to the folder whose files come back}
DEVICE=${DEVICE:-cuda}
BUDGET=${BUDGET:-400}
SCALE=${SCALE:-full}
PY=${PY:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
DATA=data; [ -f "$DATA/war_and_peace.txt" ] || DATA=../shared/data
RUNS=${RUNS:-runs/gpu}
mkdir -p "$RUNS" "$OUT"

if [ "$SCALE" = full ]; then
  # Parameter counts: LSTM 3x512 5.45M, GRU 3x592 5.45M, RNN 3x1024 5.4M (all under 16 MiB in float16).
  COMMON="--layers 3 --batch 128 --seq-len 128 --dropout 0.25 --lr 2e-3 --warmup 200 --eval-every 1000"
  LSTM="--hidden 512"; GRU="--hidden 592"; RNN="--hidden 1024 --lr 1e-3"
else
  COMMON="--layers 2 --batch 8 --seq-len 32 --dropout 0.1 --lr 3e-3 --warmup 10 --eval-every 20"
  LSTM="--hidden 32"; GRU="--hidden 32"; RNN="--hidden 48"
fi

SET=${SET:-classic}
if [ "$SET" = modern ]; then
  COMMON="--batch 64 --seq-len 100 --lr 2e-3 --schedule cosine --eval-every 500 --snapshot-every 250"
  [ "$SCALE" = full ] || COMMON="--batch 8 --seq-len 32 --lr 3e-3 --eval-every 20"
fi

train() {  # name corpus cell extra...
  local name=$1 corpus=$2 cell=$3; shift 3
  $PY -m rnnviz train "$DATA/$corpus" --out "$RUNS/$name" --cell "$cell" $COMMON "$@" \
      --time-budget "$BUDGET" --device "$DEVICE" --seed 0 --force > "$RUNS/$name.train.log" 2>&1
}
nvidia-smi -L 2>/dev/null | tee "$OUT/device.txt"
start=$(date +%s)
if [ "$SET" = modern ]; then
  NAMES=""
  for corpus in war_and_peace linux_kernel; do
    for spec in "mingru 3 160" "mamba 4 176" "slstm 2 288" "lstm 2 256"; do
      set -- $spec
      [ "$SCALE" = full ] || set -- "$1" 2 8
      name="${corpus%%_*}-$1"; name=${name/war-/wp-}; NAMES="$NAMES $name"
      train "$name" "$corpus.txt" "$1" --layers "$2" --hidden "$3" &
    done
  done
else
  NAMES="wp-lstm linux-lstm wp-gru wp-rnn"
  train wp-lstm war_and_peace.txt lstm $LSTM &
  train linux-lstm linux_kernel.txt lstm $LSTM &
  train wp-gru war_and_peace.txt gru $GRU &
  train wp-rnn war_and_peace.txt rnn $RNN &
fi
wait
echo "training done in $(( $(date +%s) - start )) s" | tee -a "$OUT/device.txt"

for name in $NAMES; do
  case $name in linux-*) corpus=linux_kernel.txt ;; *) corpus=war_and_peace.txt ;; esac
  run="$RUNS/$name"
  [ -d "$run/best" ] || { echo "$name: no checkpoint" | tee -a "$OUT/device.txt"; continue; }
  for split in val test; do
    $PY -m rnnviz eval "$run" "$DATA/$corpus" --split $split --device "$DEVICE" --json > "$run/eval_$split.json" &
  done
  wait
  # float16 weights for the repository (loading casts back to float32)
  $PY -c "import sys, torch; from rnnviz.model.checkpoint import load_checkpoint, save_checkpoint; \
m = load_checkpoint(sys.argv[1]); meta = {k: v for k, v in m.meta.items() if k in ('train', 'data', 'device', 'amp', 'metrics')}; \
save_checkpoint(m, sys.argv[2], extra=meta, dtype=torch.float16)" "$run/best" "$run/fp16"
  pack=("-cf" "$OUT/$name.tar"); [ "$SET" = modern ] && pack=("-rf" "$OUT/${name%%-*}.tar")  # at most 8 files
  tar -C "$RUNS" "${pack[@]}" "$name/fp16" "$name/log.jsonl" "$name/samples.txt" \
      "$name/eval_val.json" "$name/eval_test.json" "$name.train.log"
  echo "$name: test $(grep -o '"nats_per_char": [0-9.]*' "$run/eval_test.json")" | tee -a "$OUT/device.txt"
done

if [ "$SCALE" = full ] && [ "$SET" = modern ]; then
  $PY bench/modern_speed.py --device "$DEVICE" --threads 0 > "$OUT/bench.txt" 2>&1
elif [ "$SCALE" = full ]; then
  { $PY bench/train_throughput.py --device "$DEVICE" --layers 3 --hidden 512 --batch 128 --seq-len 128 --steps 50
    $PY bench/record_throughput.py --device "$DEVICE" --layers 3 --hidden 512
    if $PY -c "import pytest" 2>/dev/null; then $PY -m pytest -m gpu -q -p no:cacheprovider; else echo "pytest not installed: gpu tests not run"; fi; } > "$OUT/bench.txt" 2>&1
fi
ls -la "$OUT"
