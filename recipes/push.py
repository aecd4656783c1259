"""Publish a distilled student to the Hugging Face Hub (weights, config, tokenizer, card and results).

python recipes/push.py --model out/minilm-2L --repo_id <user>/minilm-L2-query-encoder [--private] [--revision b]
python recipes/push.py --model out/minilm-2L --repo_id <user>/minilm-L2-query-encoder \
    --check_queries my_queries.txt --check_documents my_documents.jsonl --min_top10_overlap 0.8
python recipes/push.py --model out/e5-2L --repo_id <user>/e5-L2-query-encoder --layout query_encoder \
    --query_encoder out/e5-2L/int8 --dry_run staged/  # the query encoder alone, with its ONNX graphs; staged only

The folder is loaded and checked before anything is uploaded. `--layout router` (the default) publishes the student
with its teacher inside, one model whose `encode_document` is the teacher's; `--layout query_encoder` publishes the
query encoder alone, a plain model without remote code (and `--query_encoder` a recipes/export.py folder of it, with
its ONNX graphs), whose card names the teacher as the document encoder: choose it when the teacher is large. With
`--check_queries` / `--check_documents` (your own data, no relevance labels) the student's agreement with its teacher
is measured per query set and written into the card, and `--min_top10_overlap` refuses a push below it
(`--push_anyway true` pushes anyway).
"""

from dataclasses import dataclass, field
from pathlib import Path

from hfdistill.cli import input_errors, parse_args, setup_logging
from hfdistill.embedding_cache import DEFAULT_CACHE_DIR
from hfdistill.hub import LAYOUTS, push_to_hub
from hfdistill.training_args import PublishCheckArguments


@dataclass
class PushArguments:
    model: str = field(metadata={"help": "Folder of the saved student."})
    repo_id: str = field(metadata={"help": "Target repository, <user or org>/<name>."})
    private: bool = field(default=False, metadata={"help": "Create the repository as private."})
    revision: str | None = field(default=None, metadata={"help": "Branch to push to (created if missing)."})
    cache_dir: str = field(default=DEFAULT_CACHE_DIR, metadata={"help": "Teacher embedding cache."})
    base_model: str | None = field(
        default=None,
        metadata={"help": "The teacher's Hub id, for a student whose teacher was loaded from a local copy."},
    )
    layout: str = field(
        default="router",
        metadata={
            "help": f"What the repo holds: {LAYOUTS} (the student with its teacher, or the query encoder alone)."
        },
    )
    query_encoder: str | None = field(
        default=None, metadata={"help": "With --layout query_encoder: the student's recipes/export.py folder (ONNX)."}
    )
    dry_run: str | None = field(
        default=None, metadata={"help": "Stage the repo (files and card) in this new folder; upload nothing."}
    )


def main(args: PushArguments, check: PublishCheckArguments) -> str:
    url = push_to_hub(
        args.model,
        args.repo_id,
        args.private,
        args.revision,
        check,
        args.cache_dir,
        args.base_model,
        args.layout,
        args.query_encoder,
        args.dry_run,
    )
    if args.dry_run:
        files = sorted(p for p in Path(url).rglob("*") if p.is_file())
        for path in files:
            print(f"{path.stat().st_size:>14,}  {path.relative_to(url)}")
        print(
            f"Staged {len(files)} files ({sum(p.stat().st_size for p in files):,} bytes) in {url}; nothing uploaded."
        )
        return url
    print(f"Pushed {args.model} to {args.repo_id}: {url}")
    print(f'Next, load it: SentenceTransformer("{args.repo_id}").encode_query([...])')
    return url


if __name__ == "__main__":
    setup_logging()
    with input_errors():  # a folder that is not a sound student, a failed check, a refused push: one line
        main(*parse_args((PushArguments, PublishCheckArguments)))
