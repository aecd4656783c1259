"""Retrieval with compressed embeddings: student and teacher, truncated or quantized, scored side by side.

Aligned students are said to inherit the teacher's robustness to output compression (LEAF). For each compression,
both sides of the search are compressed the same way (the teacher's documents, and the student's or the teacher's
queries) and scored by mteb as `recipes/evaluate.py` scores them:

- `dims/2`, `dims/4`: the first half / quarter of the dimensions (Matryoshka-style truncation; the similarity
  renormalizes them);
- `int8`, `binary`: mteb's own `CompressionWrapper` (int8 per-dimension min/max ranges of each encoded set; binary
  signs).

    HF_HUB_OFFLINE=1 python -m research.compressed_outputs --model <student> --tasks scifact msmarco-sub5k \
        --data_dir <BEIR folders> --output_dir <folder>

It prints one table and writes `compressed_outputs.json`: nDCG@10 of teacher and student per task and compression,
the student's retention against the uncompressed teacher and against the teacher compressed the same way.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from mteb.models import CompressionWrapper
from mteb.types import OutputDType

from hfdistill import load_student
from hfdistill.cli import input_errors, parse_args
from hfdistill.embedding_cache import DEFAULT_CACHE_DIR
from hfdistill.evaluation import AsymmetricEncoder, retrieval_scores
from hfdistill.retrieval_tasks import resolve_task

COMPRESSIONS = ("none", "dims/2", "dims/4", "int8", "binary")


class TruncatedEncoder:
    """The first `dims` dimensions of an mteb encoder's embeddings."""

    def __init__(self, encoder: AsymmetricEncoder, dims: int):
        self.encoder, self.dims = encoder, dims
        self.mteb_model_meta = encoder.mteb_model_meta.model_copy(update={"embed_dim": dims})

    def encode(self, inputs, **kwargs):
        return self.encoder.encode(inputs, **kwargs)[:, : self.dims]

    def similarity(self, embeddings1, embeddings2):
        return self.encoder.similarity(embeddings1, embeddings2)

    def similarity_pairwise(self, embeddings1, embeddings2):
        return self.encoder.similarity_pairwise(embeddings1, embeddings2)


def compressed(encoder: AsymmetricEncoder, compression: str, embedding_dim: int):
    """`encoder` with its outputs compressed as named in `COMPRESSIONS`."""
    if compression == "none":
        return encoder
    if compression.startswith("dims/"):
        return TruncatedEncoder(encoder, embedding_dim // int(compression.removeprefix("dims/")))
    return CompressionWrapper(encoder, OutputDType.INT8 if compression == "int8" else OutputDType.BINARY)


@dataclass
class CompressionArguments:
    model: str = field(metadata={"help": "The student (a saved hfdistill model)."})
    tasks: list[str] = field(default_factory=lambda: ["scifact"], metadata={"help": "BEIR folders or mteb tasks."})
    data_dir: str | None = field(default=None, metadata={"help": "Folder holding the BEIR task folders."})
    cache_dir: str = field(default=DEFAULT_CACHE_DIR, metadata={"help": "Teacher embedding cache."})
    batch_size: int = field(default=64, metadata={"help": "Encoding batch size."})
    output_dir: str = field(default=".", metadata={"help": "Where compressed_outputs.json is written."})


def main(args: CompressionArguments) -> dict:
    with input_errors():
        tasks = [resolve_task(name, args.data_dir) for name in args.tasks]
        model = load_student(args.model)
    dim, rows = model.config.embedding_dim, {}
    for compression in COMPRESSIONS:
        for task in tasks:
            scores = {}
            for side in ("teacher", "student"):
                encoder = AsymmetricEncoder(model, f"{side}-{compression}", side, args.cache_dir, args.batch_size)
                scores[side] = retrieval_scores(compressed(encoder, compression, dim), task)["ndcg_at_10"]
            rows.setdefault(compression, {})[task.metadata.name] = scores
    for by_task in rows.values():
        for name, scores in by_task.items():
            scores["retention"] = scores["student"] / rows["none"][name]["teacher"]
            scores["retention_same_compression"] = scores["student"] / scores["teacher"]
        by_task["mean_retention"] = sum(t["retention"] for t in by_task.values()) / len(tasks)
        by_task["teacher_mean_retention"] = sum(t["teacher"] / rows["none"][n]["teacher"] for n, t in by_task.items()
                                                if isinstance(t, dict)) / len(tasks)  # fmt: skip
    print(f"{'compression':<12}{'teacher keeps':>15}{'student retention':>19}")
    for compression, by_task in rows.items():
        print(f"{compression:<12}{by_task['teacher_mean_retention']:>15.1%}{by_task['mean_retention']:>19.1%}")
    report = {"model": args.model, "embedding_dim": dim, "compressions": rows}
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    Path(args.output_dir, "compressed_outputs.json").write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    with input_errors():
        (arguments,) = parse_args((CompressionArguments,))
    main(arguments)
