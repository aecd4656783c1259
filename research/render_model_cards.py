"""Re-render the cards under model_cards/ with the current template, from the records kept beside each card.

A card depends on the student's config and these records (`eval_results*.json`, `speed_results.json`,
`distillation.json`), not on its trained weights: each student is rebuilt from its teacher with the recorded layers,
saved in a temporary folder (so the card sees the saved layout), and its card rendered there and copied back.

    HF_HUB_OFFLINE=1 python -m research.render_model_cards [model_cards/<name> ...]

Each card is rendered for `hfdistill/<name>` (snippets name a repository with its owner), and a student of an offline
copy of a teacher names the public teacher as its base model (`PUBLIC_TEACHERS`), saying which copy measured it.
"""

import json
import shutil
import sys
import tempfile
from pathlib import Path

from hfdistill import from_teacher
from hfdistill.model_card import write_model_card
from hfdistill.run_files import EVAL_RESULTS, TRAINING_RECORD

ROOT = Path(__file__).resolve().parents[1]
OWNER = "hfdistill"
PUBLIC_TEACHERS = {"hfdistill-offline/multilingual-e5-small-q4": "intfloat/multilingual-e5-small"}
# the language of the shared evaluation sets, for records written before evaluations recorded it, and of the
# training queries (train_queries.tsv.gz: English web-search queries and questions)
TASK_LANGUAGES = {
    "scifact": ["en"],
    "msmarco-sub5k": ["en"],
    **{f"xquad-{c}": [c] for c in ("en", "de", "es", "zh", "hi", "ar")},
}
QUERY_LANGUAGES = {"train_queries.tsv.gz": ["en"]}


def with_languages(staged: Path) -> None:
    """The staged copies of a card's records, with the languages of the shared sets where a record lacks them."""
    for path in [*staged.glob("eval_results*.json"), staged / TRAINING_RECORD]:
        record = json.loads(path.read_text())
        for name, task in record.get("tasks", {}).items():
            task.setdefault("languages", TASK_LANGUAGES.get(name, []))
        if path.name == TRAINING_RECORD and not record.get("train_languages"):
            record["train_languages"] = QUERY_LANGUAGES.get(Path(record["train_queries"]).name)
        path.write_text(json.dumps(record, indent=2))


def render(folder: Path) -> None:
    record = json.loads((folder / EVAL_RESULTS).read_text())
    training = json.loads((folder / TRAINING_RECORD).read_text())
    prompt = {"student_query_prompt": training["student_query_prompt"]} if "student_query_prompt" in training else {}
    model = from_teacher(
        record["teacher"], record["student_layers"],
        share_token_embeddings=training.get("share_token_embeddings", False), **prompt,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        for path in folder.glob("*.json"):
            shutil.copy(path, tmp)
        with_languages(Path(tmp))
        card = write_model_card(model, tmp, f"{OWNER}/{folder.name}", PUBLIC_TEACHERS.get(record["teacher"]))
        shutil.copy(card, folder / "README.md")
    print(f"rendered {folder / 'README.md'}")


if __name__ == "__main__":
    folders = [Path(arg) for arg in sys.argv[1:]] or sorted(
        p.parent for p in (ROOT / "model_cards").glob("*/eval_results.json")
    )
    for folder in folders:
        render(folder)
