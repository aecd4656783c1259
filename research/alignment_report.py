"""How well a distilled student matches its teacher, by query length and by how rare a query's words were in training:
on the held-out queries of the distill recipe (same `--seed`, `--num_eval_queries`, `--train_queries`,
`--max_train_samples`) or on any query file.

    python -m research.alignment_report --model runs/minilm-2L
    python -m research.alignment_report --model runs/minilm-2L --queries ../shared/data/beir/scifact/queries.jsonl
    python -m research.alignment_report --model runs/minilm-2L --join 8  # long inputs: 8 held-out queries each

The teacher side is read from (or added to) the distill recipe's embedding cache.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from hfdistill import load_student
from hfdistill.cli import parse_args
from hfdistill.data import load_queries, load_query_splits
from hfdistill.training_args import QueryDataArguments
from research.alignment import alignment_by_length, join_consecutive


@dataclass
class AlignmentReportArguments:
    model: str = field(metadata={"help": "Hub id or local path of an hfdistill student."})
    queries: str | None = field(
        default=None, metadata={"help": "Query file (.tsv/.jsonl/.txt[.gz]); default: the held-out training queries."}
    )
    join: int = field(
        default=1, metadata={"help": "Join each run of this many consecutive queries into one text (long inputs)."}
    )
    by_rarity: bool = field(
        default=True,
        metadata={"help": "Also bin by how often each query's rarest token occurs in the training queries."},
    )
    seed: int = field(default=42, metadata={"help": "Shuffle seed of the held-out split (the distill recipe's)."})
    output_file: str | None = field(default=None, metadata={"help": "Also write the report here as JSON."})


def main(args: AlignmentReportArguments, data_args: QueryDataArguments) -> None:
    model = load_student(args.model)
    train_queries, held_out = (
        load_query_splits(data_args, args.seed) if args.by_rarity or not args.queries else (None, None)
    )
    queries = join_consecutive(load_queries(args.queries) if args.queries else held_out, args.join)
    report = {"model": args.model, "queries_from": args.queries or "held-out training queries", "joined": args.join}
    report |= alignment_by_length(
        model,
        queries,
        data_args.embedding_cache_dir,
        batch_size=data_args.teacher_batch_size,
        train_queries=train_queries if args.by_rarity else None,
    )
    joined = f" ({args.join} joined per text)" if args.join > 1 else ""
    print(f"{report['queries']} texts from {report['queries_from']}{joined}: mean cosine {report['mean_cosine']:.4f}")
    for row in report["by_length"]:
        print(f"  {row['tokens']:>6} tokens  {row['queries']:>6} queries  cosine {row['mean_cosine']:.4f}")
    for row in report.get("by_rarity", []):
        print(f"  rarest token seen {row['rarest_token_count']:>7} times in training  {row['queries']:>6} queries  "
              f"cosine {row['mean_cosine']:.4f}")  # fmt: skip
    if args.output_file:
        Path(args.output_file).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main(*parse_args((AlignmentReportArguments, QueryDataArguments)))
