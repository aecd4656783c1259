"""Publish a distilled student to the Hugging Face Hub (weights, config, tokenizer, code, card and results).

python recipes/push.py --model out/minilm-2L --repo_id <user>/minilm-L2-query-encoder [--private] [--revision b]
"""

import logging
from dataclasses import dataclass, field

from hfdistill.cli import input_errors, parse_args
from hfdistill.hub import push_to_hub


@dataclass
class PushArguments:
    model: str = field(metadata={"help": "Folder of the saved student."})
    repo_id: str = field(metadata={"help": "Target repository, <user or org>/<name>."})
    private: bool = field(default=False, metadata={"help": "Create the repository as private."})
    revision: str | None = field(default=None, metadata={"help": "Branch to push to (created if missing)."})


def main(args: PushArguments) -> str:
    url = push_to_hub(args.model, args.repo_id, args.private, args.revision)
    print(f"Pushed {args.model} to {args.repo_id}: {url}")
    return url


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.INFO)
    with input_errors():  # a folder that is not a sound student, or a push the Hub refuses: one line
        main(*parse_args((PushArguments,)))
