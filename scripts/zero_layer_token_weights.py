"""Experiment: does a 0-layer student gain from a learned weight per vocabulary token in its mean pooling?

A 0-layer student's token vectors pass the embedding LayerNorm, which removes their scale, so its mean pooling weighs
every token alike. This inserts sentence-transformers' `WordWeights` (one trainable weight per token, starting at 1)
before the student's pooling, trains it with the recipe's settings, and scores it as `recipes/evaluate.py` does. The
student is scored in memory, not saved.

    python scripts/zero_layer_token_weights.py recipes/configs/minilm-0L.yaml --output_dir runs/zero-token-weights \
        --embedding_cache_dir <the quick start's cache> --eval_strategy no --save_strategy no
"""

import json
import logging
from pathlib import Path

from sentence_transformers.sentence_transformer.modules import WordWeights

from hfdistill import AsymmetricDualEncoder
from hfdistill.cli import parse_args
from hfdistill.data import alignment_datasets, load_query_splits, training_texts
from hfdistill.evaluation import evaluate_student, format_report
from hfdistill.retrieval_tasks import resolve_task
from hfdistill.trainer import EmbeddingAlignmentTrainer
from hfdistill.training_args import EmbeddingAlignmentConfig, QueryDataArguments, StudentArguments

TASKS, DATA_DIR = ("scifact", "msmarco-sub5k"), "../shared/data/beir"


def main(student_args: StudentArguments, data_args: QueryDataArguments, training_args: EmbeddingAlignmentConfig):
    train_queries, eval_texts = load_query_splits(data_args, training_args.seed)
    texts = training_texts(data_args, train_queries, training_args.seed)
    model = AsymmetricDualEncoder.from_teacher(student_args.teacher, student_args.student_layers)
    vocab = model.tokenizer.convert_ids_to_tokens(list(range(model.config.teacher_config.vocab_size)))
    model.query_head.insert(0, WordWeights(vocab, {}, unknown_word_weight=1.0))  # trainable, every weight 1
    datasets = alignment_datasets(model, [texts, eval_texts], data_args.embedding_cache_dir,
                                  data_args.teacher_batch_size, shared_prefixes=[len(train_queries), 0],
                                  dtype=data_args.embedding_dtype)  # fmt: skip
    trainer = EmbeddingAlignmentTrainer(model, training_args, train_dataset=datasets[0], eval_dataset=datasets[1])
    trainer.train()
    alignment = trainer.evaluate()
    report = evaluate_student(model, training_args.output_dir, [resolve_task(t, DATA_DIR) for t in TASKS])
    weights = model.query_head[0].emb_layer.weight.detach().squeeze(-1)
    report.update(mean_cosine=alignment["eval_mean_cosine"], token_weight_range=[weights.min().item(),
                  weights.max().item()])  # fmt: skip
    print(format_report(report), f"\nheld-out cosine {alignment['eval_mean_cosine']:.4f}")
    Path(training_args.output_dir, "eval_results.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.INFO)
    main(*parse_args((StudentArguments, QueryDataArguments, EmbeddingAlignmentConfig)))
