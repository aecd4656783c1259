"""The training queries and teacher vectors `recipes/distill.py` trains on, written to one torch file, so a peer recipe
that runs where hfdistill does not install (model2vec pins transformers < 5.4) trains on identical data and targets.

    HF_HUB_OFFLINE=1 python -m research.baselines.teacher_targets \
        --teacher hfdistill-offline/multilingual-e5-small-q4 \
        --train_queries ../shared/data/queries/train_queries.tsv.gz --max_train_samples 50000 --output targets.pt

Reads the teacher's vectors from hfdistill's cache (computing any that are missing); writes `{"texts": [...],
"targets": (n, d) float32}`.
"""

from dataclasses import dataclass, field

import torch

from hfdistill import from_teacher
from hfdistill.cli import parse_args
from hfdistill.data import load_query_splits
from hfdistill.teacher_pass import cached_teacher_embeddings
from hfdistill.training_args import QueryDataArguments


@dataclass
class TargetArguments:
    teacher: str = field(metadata={"help": "Hub id or local path of the teacher."})
    output: str = field(metadata={"help": "The torch file written."})
    seed: int = field(default=42, metadata={"help": "The split seed of recipes/distill.py (its --seed)."})


def main(args: TargetArguments, data_args: QueryDataArguments) -> None:
    train_texts, _ = load_query_splits(data_args, args.seed)
    reference = from_teacher(args.teacher, [])
    targets = cached_teacher_embeddings(reference, train_texts, data_args.embedding_cache_dir, 64)
    torch.save({"texts": train_texts, "targets": targets.float()}, args.output)
    print(f"{args.output}: {len(train_texts)} queries, {targets.shape[1]}-d teacher vectors of {args.teacher}")


if __name__ == "__main__":
    main(*parse_args((TargetArguments, QueryDataArguments)))
