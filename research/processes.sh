#!/usr/bin/env bash
# One recipe, one process or two on this CPU (gloo): docs/usage.md's rule that N processes x
# `--per_device_train_batch_size` 128 / N is the single-process run, split; and what happens when the batch is not
# divided (N x 128 at the learning rate tuned for 128), beside one process with another seed (the run-to-run spread).
# MiniLM-L6 layers [0, 5], 10,000 queries, 2 epochs, the same held-out split; each student evaluated on scifact and
# msmarco-sub5k; table.md: retention, the batch of a step, steps, training time (the teacher pass excluded).
#
#   HF_HUB_OFFLINE=1 bash research/processes.sh runs/processes   # from the repository root, ../shared beside it
set -eu
OUT=${1:-runs/processes}
Q=../shared/data/queries/train_queries.tsv.gz
B=../shared/data/beir
COMMON="recipes/configs/minilm-2L.yaml --train_queries $Q --max_train_samples 10000 --num_train_epochs 2 \
  --save_strategy no --use_cpu true"
LAUNCH="-m accelerate.commands.launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no \
  --dynamo_backend no"

run() {  # name, python arguments...: distill (unless done), then evaluate
  local name=$1
  shift
  [ -f "$OUT/$name/distillation.json" ] || python "$@" --output_dir "$OUT/$name"
  [ -f "$OUT/$name/eval_results.json" ] || python recipes/evaluate.py --model "$OUT/$name" \
    --tasks scifact msmarco-sub5k --data_dir $B --output_dir "$OUT/$name"
}
run one-process-b128 recipes/distill.py $COMMON
run one-process-b128-seed43 recipes/distill.py $COMMON --seed 43 --split_seed 42
run two-processes-b64 $LAUNCH recipes/distill.py $COMMON --per_device_train_batch_size 64
run two-processes-b128 $LAUNCH recipes/distill.py $COMMON
RUNS="one-process-b128 one-process-b128-seed43 two-processes-b64 two-processes-b128"
python -m research.language_table --output "$OUT/table.md" --runs \
  $(for name in $RUNS; do printf "%s=%s " "$name" "$OUT/$name"; done)
for name in $RUNS; do  # the batch of a step, steps, training time
  python -c "import json, sys; r, t = (json.load(open(f'{sys.argv[1]}/{f}.json')) \
    for f in ('distillation', 'all_results')); print(sys.argv[1].rsplit('/', 1)[1], 'batch', r['batch_size'], \
    'steps', r['global_steps'], 'training', round(t['train_runtime']), 's')" "$OUT/$name" | tee -a "$OUT/table.md"
done
