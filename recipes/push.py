"""Publish a distilled student to the Hugging Face Hub (weights, config, tokenizer, code, card and results).

python recipes/push.py --model out/minilm-2L --repo_id <user>/minilm-L2-query-encoder [--private] [--revision b]
python recipes/push.py --model out/minilm-2L --repo_id <user>/minilm-L2-query-encoder \
    --check_queries my_queries.txt --check_documents my_documents.jsonl --min_top10_overlap 0.8

The folder is loaded and checked before anything is uploaded. With `--check_queries` / `--check_documents` (your own
data, no relevance labels) the student's agreement with its teacher is measured and written into the card, and
`--min_top10_overlap` refuses a push below it (`--push_anyway true` pushes anyway).
"""

from dataclasses import dataclass, field

from hfdistill.cli import input_errors, parse_args, setup_logging
from hfdistill.hub import push_to_hub
from hfdistill.training_args import PublishCheckArguments


@dataclass
class PushArguments:
    model: str = field(metadata={"help": "Folder of the saved student."})
    repo_id: str = field(metadata={"help": "Target repository, <user or org>/<name>."})
    private: bool = field(default=False, metadata={"help": "Create the repository as private."})
    revision: str | None = field(default=None, metadata={"help": "Branch to push to (created if missing)."})
    cache_dir: str = field(default="~/.cache/hfdistill/embeddings", metadata={"help": "Teacher embedding cache."})
    base_model: str | None = field(
        default=None,
        metadata={"help": "The teacher's Hub id, for a student whose teacher was loaded from a local copy."},
    )


def main(args: PushArguments, check: PublishCheckArguments) -> str:
    url = push_to_hub(args.model, args.repo_id, args.private, args.revision, check, args.cache_dir, args.base_model)
    print(f"Pushed {args.model} to {args.repo_id}: {url}")
    return url


if __name__ == "__main__":
    setup_logging()
    with input_errors():  # a folder that is not a sound student, a failed check, a refused push: one line
        main(*parse_args((PushArguments, PublishCheckArguments)))
