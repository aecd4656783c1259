"""How closely a 0-layer student's static token vectors (`hfdistill.static`) follow the student, per way of making
them: the positions each token's outputs are averaged over, and the query length at which the special tokens' share
is folded in (or none). Measured on the run's own held-out training queries (never an evaluation set): mean and 10th
percentile cosine between the static encoder's and the student's embedding of each query, and the queries' length.

    python -m research.static_vectors --model runs/e5-0L-50k --queries ../shared/data/queries/train_queries.tsv.gz \
        --output research/results/static/e5-0L-50k.json
"""

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hfdistill import load_student
from hfdistill.cli import parse_args
from hfdistill.data import load_queries, split_queries
from hfdistill.static import static_sentence_transformer


@dataclass
class StaticVectorArguments:
    model: str = field(metadata={"help": "A 0-layer student."})
    queries: str = field(metadata={"help": "The query file it was trained on; its held-out split is measured."})
    num_eval_queries: int = field(default=2000, metadata={"help": "The run's held-out queries (its split)."})
    seed: int = field(default=42, metadata={"help": "The run's split seed."})
    positions: list[int] = field(default_factory=lambda: [1, 8, 16, 32], metadata={"help": "Positions averaged."})
    typical_tokens: list[int] = field(default_factory=lambda: [0, 4, 8, 16], metadata={"help": "0: no specials."})
    output: str | None = field(default=None, metadata={"help": "Also write the rows here (JSON)."})


def main(args: StaticVectorArguments) -> list[dict]:
    model = load_student(args.model).eval()
    held_out = split_queries(load_queries(args.queries), args.num_eval_queries, seed=args.seed)[1]
    prompt = model.config.student_prompt
    student = model.encode_queries(held_out)
    lengths = [
        len(ids)
        for ids in model.query_tokenizer([prompt + q for q in held_out], add_special_tokens=False)["input_ids"]
    ]
    print(f"{len(held_out)} held-out queries, tokens per query: median {statistics.median(lengths)}, "
          f"mean {statistics.mean(lengths):.1f}")  # fmt: skip
    rows = []
    for positions in args.positions:
        for typical in args.typical_tokens:
            static = static_sentence_transformer(model, positions, typical or None)
            embeddings = static.encode_query(held_out, convert_to_tensor=True)
            cosine = torch.nn.functional.cosine_similarity(embeddings, student).sort().values
            row = {"positions": positions, "typical_tokens": typical, "mean_cosine": round(float(cosine.mean()), 4),
                   "p10_cosine": round(float(cosine[len(cosine) // 10]), 4)}  # fmt: skip
            print(row)
            rows.append(row)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        record = {"model": args.model, "queries": len(held_out), "median_tokens": statistics.median(lengths)}
        Path(args.output).write_text(json.dumps({**record, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main(*parse_args((StaticVectorArguments,)))
