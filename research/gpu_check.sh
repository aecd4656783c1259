#!/usr/bin/env bash
# One prepared check on a GPU machine, under 10 minutes on one GPU: the tests, a short mpnet [0, 11] distillation in
# bf16 (teacher pass and training), its retention, and the speed benchmark. Needs the package installed
# (`pip install -e ".[tests]"`) and the teachers in the Hub cache (or a network). Results go to $OUT.
#
#     bash scripts/gpu_check.sh            # OUT=out/gpu-check
set -euo pipefail
cd "$(dirname "$0")/.."
export TOKENIZERS_PARALLELISM=false
OUT=${OUT:-out/gpu-check}
DATA=${DATA:-../shared/data}
mkdir -p "$OUT"
python -c "import torch; assert torch.cuda.is_available(), 'no GPU visible to torch'; print(torch.cuda.get_device_name())"
start=$(date +%s)
timeout 150 python -m pytest -q -x -m "not slow" tests 2>&1 | tail -3
timeout 240 accelerate launch --num_processes 1 --mixed_precision bf16 recipes/distill.py recipes/configs/mpnet-2L.yaml \
  --train_queries "$DATA/queries/train_queries.tsv.gz" --max_train_samples 50000 --teacher_batch_size 512 --bf16 true \
  --eval_strategy no --save_strategy no --report_to none --overwrite_output_dir true --disable_tqdm true \
  --embedding_cache_dir "$OUT/cache" --output_dir "$OUT/mpnet-0-11"
timeout 120 python recipes/evaluate.py --model "$OUT/mpnet-0-11" --tasks scifact msmarco-sub5k \
  --data_dir "$DATA/beir" --output_dir "$OUT/mpnet-0-11"
timeout 60 python recipes/benchmark.py --model "$OUT/mpnet-0-11" --device cuda --repeats 3 \
  --queries "$DATA/msmarco/queries.dev.small.tsv.gz" --output_dir "$OUT/mpnet-0-11"
echo "gpu_check: done in $(( $(date +%s) - start )) s; results in $OUT/mpnet-0-11"
