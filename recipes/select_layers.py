"""Rank which teacher layers a k-layer student should keep, before training it.

    python recipes/select_layers.py research/configs/mpnet-2L-best.yaml --num_student_layers 2 \
        --train_queries queries.tsv.gz --output_dir out/selection
    python recipes/select_layers.py --teacher sentence-transformers/all-MiniLM-L6-v2 --train_queries queries.tsv.gz \
        --selection_training_steps 0 --output_dir out/selection

Scores every candidate layer set (or those given with `--candidates 0,11 10,11`) by how its untrained truncated
student agrees with the teacher on the held-out queries of the distill recipe (same config, `--seed`,
`--num_eval_queries`): the mean cosine of their embeddings. Then the top `--selection_shortlist` candidates train
`--selection_training_steps` steps each (default 50; 0 skips this) with the config's loss, learning rate and batch,
and the best held-out cosine wins. Prints the ranking and
the time it took; `recipes/distill.py --student_layers auto` makes the same choice and then distills the winner.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from hfdistill.cli import input_errors, parse_args, setup_logging
from hfdistill.data import training_texts
from hfdistill.layer_selection import select_student_layers
from hfdistill.preflight import check_run
from hfdistill.training_args import EmbeddingAlignmentConfig, QueryDataArguments, StudentArguments


@dataclass
class SelectionArguments:
    max_candidates: int = field(default=64, metadata={"help": "Score at most this many layer sets."})
    candidates: list[str] | None = field(
        default=None, metadata={"help": "Score only these layer sets, each comma-separated, e.g. `0,11 10,11`."}
    )
    output_file: str | None = field(default=None, metadata={"help": "Also write the ranking here as JSON."})


def main(
    student_args: StudentArguments,
    data_args: QueryDataArguments,
    training_args: EmbeddingAlignmentConfig,
    args: SelectionArguments,
) -> None:
    with input_errors():  # the teacher, its layers and the queries, before any model loads
        candidates = _parse_candidates(args.candidates)
        train_queries, held_out, _ = check_run(student_args, data_args, training_args)
    train_texts = training_texts(data_args, train_queries, training_args.seed)
    result = select_student_layers(
        student_args, data_args, training_args, train_texts, held_out, args.max_candidates, candidates
    )
    print(f"{'layers':<20} {'untrained cosine':>16}")
    for candidate in result["ranking"]:
        print(f"{str(candidate['layers']):<20} {candidate['cosine']:>16.4f}")
    for trial in result.get("trials", []):
        steps = result["training_steps"]
        print(f"{str(trial['layers']):<20} held-out cosine {trial['trained_cosine']:.4f} after {steps} steps")
    print(
        f"selected {result['selected']} by cosine"
        f"{' and short training' if 'trials' in result else ''}: {len(result['ranking'])} candidates scored on "
        f"{len(held_out)} held-out queries in {result['seconds']:.1f} s"
    )
    print(
        f"Next, distill it: python recipes/distill.py <the same config and options> --student_layers "
        f"{' '.join(map(str, result['selected']))}"
    )
    if args.output_file:
        Path(args.output_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_file).write_text(json.dumps({**result, "num_queries": len(held_out)}, indent=2))


def _parse_candidates(candidates: list[str] | None) -> list[list[int]] | None:
    if not candidates:
        return None
    try:
        return [[int(index) for index in candidate.split(",")] for candidate in candidates]
    except ValueError:
        message = f"candidates must be comma-separated layer indices, e.g. `0,11 10,11`; got {candidates}."
        raise ValueError(message) from None


if __name__ == "__main__":
    setup_logging()
    with input_errors():
        arguments = parse_args((StudentArguments, QueryDataArguments, EmbeddingAlignmentConfig, SelectionArguments))
    main(*arguments)
