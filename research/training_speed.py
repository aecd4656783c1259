"""Training throughput side by side: hfdistill's trainer (random batches in length chunks, length-grouped batches,
plain random batches) and sentence-transformers' layer-reduction recipe (`SentenceTransformerTrainer` + `MSELoss`),
on the same student, texts and cached teacher vectors, the teacher pass excluded. The texts are those a run of the same
data options trains on (queries, joined queries and, with `--train_documents`, the cuts of the documents), a random
`--steps` x `--batch_size` of them. Each method trains `--steps` steps from the same initial student, in turn,
`--repeats` times; the median texts/s is reported.

    HF_HUB_OFFLINE=1 python -m research.training_speed --teacher sentence-transformers/all-MiniLM-L6-v2 \
        --student_layers 0 5 --train_queries ../shared/data/queries/train_queries.tsv.gz --max_train_samples 20000 \
        --steps 40 --repeats 3 --output_file runs/training-speed/minilm.json
"""

import json
import logging
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import MSELoss
from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

from hfdistill import from_teacher
from hfdistill.cli import parse_args
from hfdistill.data import QueryAlignmentDataset, load_query_splits, training_texts
from hfdistill.documents import index_texts, load_index_documents
from hfdistill.modeling_asymmetric import layer_stack, set_layer_stack
from hfdistill.teacher_pass import cached_teacher_embeddings
from hfdistill.trainer import EmbeddingAlignmentTrainer
from hfdistill.training_args import EmbeddingAlignmentConfig, QueryDataArguments

METHODS = {  # name: hfdistill's batching options, or None for the sentence-transformers recipe
    "hfdistill (random batches in length chunks)": {"train_sampling_strategy": "random"},
    "hfdistill (length-grouped batches)": {"train_sampling_strategy": "group_by_length", "length_chunk_cost": 10**6},
    "hfdistill (random batches, padded)": {"train_sampling_strategy": "random", "length_chunk_cost": 10**6},
    "sentence-transformers (SentenceTransformerTrainer + MSELoss)": None,
}


@dataclass
class SpeedArguments:
    teacher: str = field(metadata={"help": "Hub id or local path of the teacher."})
    student_layers: list[int] = field(metadata={"help": "0-based teacher layers the student keeps."})
    student_query_prompt: str | None = field(default=None, metadata={"help": "The student's prompt (both recipes)."})
    steps: int = field(default=40, metadata={"help": "Training steps timed per method and repeat."})
    repeats: int = field(default=3, metadata={"help": "Repeats (median reported)."})
    batch_size: int = field(default=128, metadata={"help": "Training batch size."})
    threads: int | None = field(default=None, metadata={"help": "torch threads."})
    output_file: str | None = field(default=None, metadata={"help": "Write the results here as JSON."})


def hfdistill_run(args: SpeedArguments, texts, targets, options: dict, workdir: str) -> float:
    model = from_teacher(args.teacher, args.student_layers, student_query_prompt=args.student_query_prompt)
    dataset = QueryAlignmentDataset(texts, targets, model)
    config = EmbeddingAlignmentConfig(output_dir=workdir, overwrite_output_dir=True, max_steps=args.steps,
                                      per_device_train_batch_size=args.batch_size, save_strategy="no",
                                      report_to="none", disable_tqdm=True, use_cpu=True, **options)  # fmt: skip
    return EmbeddingAlignmentTrainer(model, config, train_dataset=dataset).train().metrics["train_runtime"]


def sentence_transformers_run(args: SpeedArguments, texts, targets, prompt: str, workdir: str) -> float:
    student = SentenceTransformer(args.teacher, device="cpu")
    encoder = student.transformers_model
    set_layer_stack(encoder, [layer_stack(encoder)[index] for index in args.student_layers])
    encoder.config.num_hidden_layers = len(args.student_layers)
    dataset = Dataset.from_dict({"sentence": texts, "label": targets.float().numpy()})
    config = SentenceTransformerTrainingArguments(output_dir=workdir, max_steps=args.steps, save_strategy="no",
                                                  per_device_train_batch_size=args.batch_size, report_to="none",
                                                  disable_tqdm=True, use_cpu=True, prompts=prompt or None)  # fmt: skip
    trainer = SentenceTransformerTrainer(model=student, args=config, train_dataset=dataset, loss=MSELoss(student))
    return trainer.train().metrics["train_runtime"]


def main(args: SpeedArguments, data_args: QueryDataArguments) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    queries, _ = load_query_splits(data_args, 42)
    texts = training_texts(data_args, queries, 42)
    reference = from_teacher(args.teacher, args.student_layers, student_query_prompt=args.student_query_prompt)
    cuts = index_texts(data_args, load_index_documents(data_args), reference.query_tokenizer, len(queries), 42)
    texts = random.Random(0).sample(texts + cuts, min(len(texts) + len(cuts), args.steps * args.batch_size))
    cut_set = set(cuts)
    targets = cached_teacher_embeddings(reference, texts, data_args.embedding_cache_dir, 64)
    seconds = {name: [] for name in METHODS}
    with tempfile.TemporaryDirectory() as workdir:
        for _ in range(args.repeats):
            for name, options in METHODS.items():
                start = time.perf_counter()
                if options is None:
                    runtime = sentence_transformers_run(args, texts, targets, reference.config.student_prompt, workdir)
                else:
                    runtime = hfdistill_run(args, texts, targets, options, workdir)
                seconds[name].append(runtime)
                logging.info("%s: %.1f s (%.1f s with set-up)", name, runtime, time.perf_counter() - start)
    results = {
        "teacher": args.teacher, "student_layers": args.student_layers, "steps": args.steps,
        "batch_size": args.batch_size, "threads": torch.get_num_threads(), "repeats": args.repeats,
        "num_timed_document_texts": len([text for text in texts if text in cut_set]), "num_timed_texts": len(texts),
        "texts_per_second": {name: args.steps * args.batch_size / statistics.median(times)
                             for name, times in seconds.items()},
        "seconds": seconds,
    }  # fmt: skip
    for name, rate in results["texts_per_second"].items():
        print(f"{name:<62}{rate:>10.1f} texts/s")
    if args.output_file:
        Path(args.output_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_file).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.INFO)
    main(*parse_args((SpeedArguments, QueryDataArguments)))
