"""How much of an evaluation set's query text a student's training queries show it: the share of the evaluation
queries' tokens (the student's tokenizer, counted with repeats) that occur at least once, and at least 5 times, in
the training queries `recipes/distill.py` would use. A 0-layer student learns only the token vectors its queries show.

    HF_HUB_OFFLINE=1 python -m research.token_coverage --tokenizer hfdistill-offline/multilingual-e5-small-q4 \
        --train_queries ../shared/data/queries/train_queries.tsv.gz --max_train_samples 50000 \
        --tasks scifact msmarco-sub5k --data_dir ../shared/data/beir
"""

import json
from collections import Counter
from dataclasses import dataclass, field

from transformers import AutoTokenizer

from hfdistill.cli import parse_args
from hfdistill.data import load_query_splits
from hfdistill.retrieval_tasks import read_beir_folder
from hfdistill.training_args import QueryDataArguments


@dataclass
class CoverageArguments:
    tokenizer: str = field(metadata={"help": "The student's tokenizer (the teacher's, for a 0-layer student)."})
    tasks: list[str] = field(default_factory=lambda: ["scifact", "msmarco-sub5k"], metadata={"help": "BEIR folders."})
    data_dir: str = field(default=".", metadata={"help": "Folder of the BEIR-format datasets."})
    seed: int = field(default=42, metadata={"help": "The split seed of recipes/distill.py."})


def token_counts(tokenizer, texts: list[str]) -> Counter:
    counts = Counter()
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        counts.update(ids)
    return counts


def main(args: CoverageArguments, data_args: QueryDataArguments) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    train_texts, _ = load_query_splits(data_args, args.seed)
    seen = token_counts(tokenizer, train_texts)
    coverage = {}
    for task in args.tasks:
        counts = token_counts(tokenizer, list(read_beir_folder(f"{args.data_dir}/{task}")["queries"].values()))
        total = sum(counts.values())
        coverage[task] = {
            f"seen_{k}": sum(n for token, n in counts.items() if seen[token] >= k) / total for k in (1, 5)
        }
    report = {"train_queries": len(train_texts), "distinct_train_tokens": len(seen), "coverage": coverage}
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main(*parse_args((CoverageArguments, QueryDataArguments)))
