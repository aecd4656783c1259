"""The peer recipe: sentence-transformers' own layer reduction (`SentenceTransformerTrainer` + `MSELoss`), run on the
same queries, split and teacher vectors as `recipes/distill.py`, then scored as `recipes/evaluate.py` scores students.

It follows sentence-transformers' example `examples/sentence_transformer/training/distillation/
model_distillation_layer_reduction.py`: the teacher is loaded as a `SentenceTransformer`, the layers not kept are
dropped from its encoder, and the student regresses the teacher's embeddings (the `label` column) with `MSELoss`. The
teacher's vectors are read from hfdistill's cache, so both recipes train on identical targets; the student reads its
queries with the teacher's query prompt, as hfdistill's does unless told otherwise (`--student_query_prompt ""`).

    HF_HUB_OFFLINE=1 python -m research.baselines.sentence_transformers_recipe \
        --teacher sentence-transformers/all-MiniLM-L6-v2 --student_layers 0 5 \
        --train_queries ../shared/data/queries/train_queries.tsv.gz --max_train_samples 20000 \
        --learning_rate 5e-4 --per_device_train_batch_size 128 --warmup_steps 0.1 \
        --tasks scifact msmarco-sub5k --data_dir ../shared/data/beir --output_dir runs/peer/minilm-0-5

Writes `<output_dir>/final` (the student), `peer_record.json` (training time and throughput, teacher pass excluded)
and `eval_results.json`.
"""

import json
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
from hfdistill.data import load_query_splits
from hfdistill.documents import index_texts, load_index_documents
from hfdistill.evaluation import evaluate_student, format_report
from hfdistill.modeling_asymmetric import layer_stack, set_layer_stack
from hfdistill.query_encoders import SentenceTransformerQueryEncoder
from hfdistill.retrieval_tasks import resolve_task
from hfdistill.teacher_pass import cached_teacher_embeddings
from hfdistill.training_args import QueryDataArguments


@dataclass
class PeerArguments:
    teacher: str = field(metadata={"help": "Hub id or local path of the teacher."})
    student_layers: list[int] = field(metadata={"help": "0-based teacher layers the student keeps."})
    student_query_prompt: str | None = field(
        default=None, metadata={"help": "The student's query prompt (default: the teacher's); \"\" = prompt-free."}
    )
    tasks: list[str] = field(default_factory=lambda: ["scifact", "msmarco-sub5k"], metadata={"help": "Tasks."})
    data_dir: str | None = field(default=None, metadata={"help": "Folder of BEIR-format datasets."})


def main(peer: PeerArguments, data_args: QueryDataArguments, args: SentenceTransformerTrainingArguments) -> dict:
    train_texts, eval_texts = load_query_splits(data_args, args.seed)
    num_queries = len(train_texts)
    documents = load_index_documents(data_args)  # with --train_documents: the same index texts as hfdistill's
    reference = from_teacher(peer.teacher, peer.student_layers, student_query_prompt=peer.student_query_prompt)
    train_texts += index_texts(data_args, documents, reference.query_tokenizer, num_queries, args.seed)
    targets = cached_teacher_embeddings(reference, train_texts, data_args.embedding_cache_dir, 64, num_queries)
    prompt = reference.config.student_prompt  # the teacher's query prompt, unless the student is prompt-free

    student = SentenceTransformer(peer.teacher, device="cpu")
    if not prompt:  # a prompt-free student: encode_query must not add the cloned teacher's query prompt
        student.prompts, student.default_prompt_name = {}, None
    encoder = student.transformers_model
    set_layer_stack(encoder, [layer_stack(encoder)[index] for index in peer.student_layers])
    encoder.config.num_hidden_layers = len(peer.student_layers)
    train_dataset = Dataset.from_dict({"sentence": train_texts, "label": targets.float().numpy()})
    if prompt:
        args.prompts = prompt
    trainer = SentenceTransformerTrainer(
        model=student, args=args, train_dataset=train_dataset, loss=MSELoss(model=student)
    )
    metrics = trainer.train().metrics
    final = Path(args.output_dir, "final")
    student.save(str(final))
    record = {
        "recipe": "sentence-transformers layer reduction (SentenceTransformerTrainer + MSELoss)",
        "teacher": peer.teacher,
        "student_layers": peer.student_layers,
        "num_train_queries": num_queries,
        "train_documents": data_args.train_documents,
        "num_document_texts": len(train_texts) - num_queries,
        "learning_rate": args.learning_rate,
        "batch_size": args.per_device_train_batch_size,
        "num_train_epochs": args.num_train_epochs,
        "train_runtime": metrics["train_runtime"],
        "train_texts_per_second": len(train_texts) * args.num_train_epochs / metrics["train_runtime"],
        "threads": torch.get_num_threads(),
    }
    Path(args.output_dir, "peer_record.json").write_text(json.dumps(record, indent=2))
    tasks = [resolve_task(name, peer.data_dir) for name in peer.tasks]
    query_encoder = SentenceTransformerQueryEncoder(str(final))
    report = evaluate_student(reference, str(final), tasks, data_args.embedding_cache_dir, query_encoder=query_encoder)
    report["student_layers"] = peer.student_layers
    print(format_report(report))
    Path(args.output_dir, "eval_results.json").write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main(*parse_args((PeerArguments, QueryDataArguments, SentenceTransformerTrainingArguments)))
