"""Rank which teacher layers a k-layer student should keep, without training any candidate.

    python recipes/select_layers.py --teacher sentence-transformers/all-MiniLM-L6-v2 --num_student_layers 2

Scores every candidate layer set by the alignment of its untrained truncated student with the teacher on the
held-out queries of the distill recipe (same `--seed`, `--num_eval_queries`), and prints the ranking and the time it
took. `recipes/distill.py --student_layers auto` runs the same selection and then distills the winner.
"""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from hfdistill.cli import parse_args
from hfdistill.layer_selection import auto_select_layers
from hfdistill.training_args import QueryDataArguments, StudentArguments


@dataclass
class SelectionArguments:
    seed: int = field(default=42, metadata={"help": "Shuffle seed of the held-out split (the distill recipe's)."})
    max_candidates: int = field(default=64, metadata={"help": "Score at most this many layer sets."})
    output_file: str | None = field(default=None, metadata={"help": "Also write the ranking here as JSON."})


def main(student_args: StudentArguments, data_args: QueryDataArguments, args: SelectionArguments) -> None:
    _, held_out = data_args.load_splits(args.seed)
    best, ranking, seconds = auto_select_layers(
        student_args.teacher,
        held_out,
        student_args.num_student_layers,
        data_args.embedding_cache_dir,
        args.max_candidates,
        **student_args.teacher_kwargs,
    )
    result = {"selected": best, "seconds": round(seconds, 1), "num_queries": len(held_out), "ranking": ranking}
    for candidate in ranking:
        print(f"{str(candidate['layers']):<20} {candidate['mean_cosine']:.4f}")
    print(f"selected {best}: {len(ranking)} candidates scored on {len(held_out)} held-out queries in {seconds:.1f} s")
    if args.output_file:
        Path(args.output_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_file).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.INFO)
    main(*parse_args((StudentArguments, QueryDataArguments, SelectionArguments)))
