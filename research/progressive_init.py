"""Progressive initialisation (12 -> 4 -> 2): `recipes/distill.py`, with the new student's layers, token embeddings
and head taken from a trained student of the same teacher instead of from the teacher.

    HF_HUB_OFFLINE=1 python -m research.progressive_init --init_from runs/e5-4L --init_layers 0 3 -- \
        --teacher hfdistill-offline/multilingual-e5-small-q4 --student_layers 0 11 --student_query_prompt "" \
        --train_queries ../shared/data/queries/train_queries.tsv.gz --max_train_samples 50000 \
        --num_train_epochs 1.59 --output_dir runs/e5-2L-from-4L

`--init_layers` are positions in the trained student's stack (0 and 3 of [0, 1, 10, 11] are the teacher's 0 and 11).
Measured no gain over the teacher's own layers (docs/results.md), so it is not an option of the recipe.
"""

import argparse
import runpy

from hfdistill import AsymmetricDualEncoder, from_teacher
from hfdistill.modeling_asymmetric import layer_stack


def initialise_from(model: AsymmetricDualEncoder, trained: AsymmetricDualEncoder, positions: list[int]) -> None:
    """Copy `trained`'s query layers at `positions`, its embeddings and head into `model`'s query side."""
    target, source = layer_stack(model.query_encoder), layer_stack(trained.query_encoder)
    if len(positions) != len(target):
        raise ValueError(f"--init_layers gives {len(positions)} layers for a student of {len(target)}.")
    for new, old in enumerate(positions):
        target[new].load_state_dict(source[old].state_dict())
    model.query_encoder.embeddings.load_state_dict(trained.query_encoder.embeddings.state_dict())
    model.query_head.load_state_dict(trained.query_head.state_dict())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--init_from", required=True, help="A trained student of the same teacher.")
    parser.add_argument("--init_layers", type=int, nargs="+", required=True, help="Positions in its layer stack.")
    args, distill_args = parser.parse_known_args()
    trained = AsymmetricDualEncoder.from_pretrained(args.init_from)

    def initialised(*positional, **keywords) -> AsymmetricDualEncoder:
        model = from_teacher(*positional, **keywords)
        initialise_from(model, trained, args.init_layers)
        return model

    recipe = runpy.run_path("recipes/distill.py")  # the recipe's functions, not run as __main__
    recipe["run"]([arg for arg in distill_args if arg != "--"], build=initialised)


if __name__ == "__main__":
    main()
