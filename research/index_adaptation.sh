#!/usr/bin/env bash
# The corpus-adapted e5-small students of docs/results.md ("A student for your own index"), their evaluation on
# scifact, msmarco-sub5k and the six XQuAD languages, an input ablation, and sentence-transformers' recipe on the
# queries alone and given the same text. Every run: 50,000 training queries (2,000 held out), the default recipe.
# XQuAD's and scifact's corpora stand in for "the user's own index": their queries and qrels are never trained on.
#
#   HF_HUB_OFFLINE=1 bash research/index_adaptation.sh runs/index   # from the repository root, ../shared beside it
set -eu
OUT=${1:-runs/index}
T=hfdistill-offline/multilingual-e5-small-q4
Q=../shared/data/queries/train_queries.tsv.gz
B=../shared/data/beir
TASKS="scifact msmarco-sub5k xquad-en xquad-de xquad-es xquad-zh xquad-hi xquad-ar"
LANGS="scifact=en msmarco-sub5k=en xquad-en=en xquad-de=de xquad-es=es xquad-zh=zh xquad-hi=hi xquad-ar=ar"
ALL6=$(for lang in en de es zh hi ar; do printf "%s " "$B/xquad-$lang/corpus.jsonl.gz"; done)

run() {  # name, config, distill options...: distill (unless done), then evaluate on every task
  local name=$1 config=$2
  shift 2
  [ -f "$OUT/$name/distillation.json" ] || python recipes/distill.py "$config" --teacher $T --train_queries $Q \
    --max_train_samples 50000 --output_dir "$OUT/$name" "$@"
  [ -f "$OUT/$name/eval_results.json" ] || python recipes/evaluate.py --model "$OUT/$name" --tasks $TASKS \
    --languages $LANGS --data_dir $B --output_dir "$OUT/$name"
}
two() { local name=$1; shift; run "$name" recipes/configs/e5-small-2L.yaml --num_train_epochs 1.59 "$@"; }
peer() {  # name, learning rate, options...: sentence-transformers' layer reduction on the same text
  local name=$1 lr=$2
  shift 2
  [ -f "$OUT/$name/eval_results.json" ] || python -m research.baselines.sentence_transformers_recipe --teacher $T \
    --student_layers 0 11 --student_query_prompt "" --train_queries $Q --max_train_samples 50000 \
    --num_eval_queries 2000 --learning_rate "$lr" --per_device_train_batch_size 128 --warmup_steps 0.1 \
    --num_train_epochs 1 --report_to none --tasks $TASKS --data_dir $B --output_dir "$OUT/$name" "$@"
}

two query-only --train_languages en
for lang in de hi ar es zh; do  # one student per language, adapted on that language's 240 paragraphs
  two "$lang-f0.2" --train_documents "$B/xquad-$lang/corpus.jsonl.gz" --document_fraction 0.2 --train_languages en "$lang"
done
two hi-f0.4 --train_documents $B/xquad-hi/corpus.jsonl.gz --document_fraction 0.4 --train_languages en hi
two hi-f0.6 --train_documents $B/xquad-hi/corpus.jsonl.gz --document_fraction 0.6 --train_languages en hi
two ar-f0.6 --train_documents $B/xquad-ar/corpus.jsonl.gz --document_fraction 0.6 --train_languages en ar
two ar-f1.0 --train_documents $B/xquad-ar/corpus.jsonl.gz --document_fraction 1.0 --train_languages en ar
run ar-f1.0-e2.5 recipes/configs/e5-small-2L.yaml --num_train_epochs 2.5 --train_documents $B/xquad-ar/corpus.jsonl.gz \
  --document_fraction 1.0 --train_languages en ar  # the same trained longer (2,053 steps)
two de-spans-f0.2 --train_documents $B/xquad-de/corpus.jsonl.gz --document_fraction 0.2 --document_inputs spans \
  --train_languages en de
two all6-f0.8 --train_documents $ALL6 --document_fraction 0.8 --train_languages en de es zh hi ar  # one index, six languages
run all6-f0.8-e3.7 recipes/configs/e5-small-2L.yaml --num_train_epochs 3.7 --train_documents $ALL6 --document_fraction 0.8 \
  --train_languages en de es zh hi ar  # the same for 2.3 times the time of 1.59 epochs (two runs' wall clocks)
run all6-f0.8-e5.7 recipes/configs/e5-small-2L.yaml --num_train_epochs 5.7 --train_documents $ALL6 --document_fraction 0.8 \
  --train_languages en de es zh hi ar  # the peer's training time: 6.0x its texts/s (training_speed below), 90,000 / 95,000 texts
run 4L-all6-f0.8 recipes/configs/e5-small-4L.yaml --num_train_epochs 1.59 --train_documents $ALL6 --document_fraction 0.8 \
  --train_languages en de es zh hi ar  # the same with 4 layers [0, 1, 10, 11]
two scifact-f0.4 --train_documents $B/scifact/corpus.jsonl.gz --document_fraction 0.4 --train_languages en
peer peer-query-only 5e-3
peer peer-all6-f0.8 5e-3 --train_documents $ALL6 --document_fraction 0.8
peer peer-all6-f0.8-lr2e-3 2e-3 --train_documents $ALL6 --document_fraction 0.8
peer peer-all6-f0.8-lr1e-2 1e-2 --train_documents $ALL6 --document_fraction 0.8
[ -f "$OUT/training-speed.json" ] || python -m research.training_speed --teacher $T --student_layers 0 11 \
  --student_query_prompt "" --train_queries $Q --max_train_samples 50000 --num_eval_queries 2000 \
  --train_documents $ALL6 --document_fraction 0.8 --steps 20 --repeats 3 --threads 2 \
  --output_file "$OUT/training-speed.json"  # both recipes side by side on this text
python -m research.language_table --output "$OUT/table.md" --runs \
  "queries only=$OUT/query-only" \
  "+ German paragraphs, f 0.2=$OUT/de-f0.2" \
  "+ German paragraphs, spans only, f 0.2=$OUT/de-spans-f0.2" \
  "+ Spanish paragraphs, f 0.2=$OUT/es-f0.2" \
  "+ Chinese paragraphs, f 0.2=$OUT/zh-f0.2" \
  "+ Hindi paragraphs, f 0.2=$OUT/hi-f0.2" \
  "+ Hindi paragraphs, f 0.4=$OUT/hi-f0.4" \
  "+ Hindi paragraphs, f 0.6=$OUT/hi-f0.6" \
  "+ Arabic paragraphs, f 0.2=$OUT/ar-f0.2" \
  "+ Arabic paragraphs, f 0.6=$OUT/ar-f0.6" \
  "+ Arabic paragraphs, f 1.0=$OUT/ar-f1.0" \
  "+ Arabic paragraphs, f 1.0, 2.5 epochs=$OUT/ar-f1.0-e2.5" \
  "+ the six languages' paragraphs, f 0.8=$OUT/all6-f0.8" \
  "+ the six languages' paragraphs, f 0.8, 3.7 epochs=$OUT/all6-f0.8-e3.7" \
  "+ the six languages' paragraphs, f 0.8, 5.7 epochs (the peer's training time)=$OUT/all6-f0.8-e5.7" \
  "+ the six languages' paragraphs, f 0.8, 4 layers=$OUT/4L-all6-f0.8" \
  "sentence-transformers' recipe (lr 5e-3), queries only=$OUT/peer-query-only" \
  "sentence-transformers' recipe (lr 5e-3), + the six languages' paragraphs, f 0.8=$OUT/peer-all6-f0.8" \
  "sentence-transformers' recipe (lr 2e-3), + the six languages' paragraphs, f 0.8=$OUT/peer-all6-f0.8-lr2e-3" \
  "sentence-transformers' recipe (lr 1e-2), + the six languages' paragraphs, f 0.8=$OUT/peer-all6-f0.8-lr1e-2"
