"""Retrieval tasks for mteb: local BEIR-format folders (read and checked offline) or mteb's registered tasks."""

import json
from pathlib import Path

import mteb
from datasets import Dataset
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.task_metadata import TaskMetadata

from .data import open_text
from .embedding_cache import fingerprint

BEIR_FILES = ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv")


def _read_jsonl(path: Path) -> list[dict]:
    with open_text(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _find(folder: Path, name: str) -> Path | None:
    return next((p for p in (folder / name, folder / f"{name}.gz") if p.is_file()), None)


def read_beir_folder(folder: str | Path) -> dict:
    """Corpus, queries and test qrels of a BEIR-format folder, checked for consistency."""
    folder = Path(folder)
    paths = {name: _find(folder, name) for name in BEIR_FILES}
    missing = [name for name, path in paths.items() if path is None]
    if missing:
        raise FileNotFoundError(f"BEIR folder {str(folder)!r} lacks {missing} (plain or .gz).")
    corpus = {str(d["_id"]): d for d in _read_jsonl(paths["corpus.jsonl"])}
    if not corpus:
        raise ValueError(f"{paths['corpus.jsonl']}: the corpus is empty.")
    queries = {str(q["_id"]): q["text"] for q in _read_jsonl(paths["queries.jsonl"])}
    qrels: dict[str, dict[str, int]] = {}
    with open_text(paths["qrels/test.tsv"]) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or parts[0] == "query-id" or not parts[2].lstrip("-").isdigit():
                continue
            qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    unknown_queries = sorted(set(qrels) - set(queries))
    unknown_docs = sorted({d for docs in qrels.values() for d in docs} - set(corpus))
    if unknown_queries or unknown_docs:
        raise ValueError(
            f"{paths['qrels/test.tsv']} names unknown ids: queries {unknown_queries[:5]}, "
            f"documents {unknown_docs[:5]}."
        )
    if not qrels:
        raise ValueError(f"{paths['qrels/test.tsv']} has no judgements.")
    return {"corpus": corpus, "queries": {q: queries[q] for q in qrels}, "qrels": qrels}


class LocalBeirRetrieval(AbsTaskRetrieval):
    """An mteb retrieval task over a local BEIR-format folder (test split), fully offline; build with `from_folder`."""

    data: dict

    @classmethod
    def from_folder(cls, folder: str | Path, languages: list[str] | None = None) -> "LocalBeirRetrieval":
        """The task of a BEIR-format folder; `languages` (codes such as `de`) are what its queries and documents are
        written in, recorded with its scores (`und`, undetermined, when not given)."""
        folder = Path(folder)
        data = read_beir_folder(folder)
        # texts, not just ids, so an edited document or query gives a new revision (and new cached teacher scores)
        content = fingerprint(
            [json.dumps(data["corpus"], sort_keys=True), json.dumps(data["queries"], sort_keys=True)]
            + [json.dumps(data["qrels"], sort_keys=True)]
        )
        metadata = TaskMetadata(  # mteb reads metadata from the class, so each folder gets its own subclass
            name=folder.name,
            description=f"Local BEIR-format retrieval set at {folder}.",
            dataset={"path": str(folder), "revision": content[:16]},
            type="Retrieval",
            category="t2t",
            modalities=["text"],
            eval_splits=["test"],
            eval_langs=list(languages or ["und"]),
            main_score="ndcg_at_10",
        )
        task = type(f"LocalBeirRetrieval_{folder.name}", (cls,), {"metadata": metadata})()
        task.data = data
        return task

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        if self.data_loaded:
            return
        corpus = self.data["corpus"]
        self.dataset = {
            "default": {
                "test": {
                    "corpus": Dataset.from_dict(
                        {
                            "id": list(corpus),
                            "title": [d.get("title") or "" for d in corpus.values()],
                            "text": [d.get("text") or "" for d in corpus.values()],
                        }
                    ),
                    "queries": Dataset.from_dict(
                        {"id": list(self.data["queries"]), "text": list(self.data["queries"].values())}
                    ),
                    "relevant_docs": self.data["qrels"],
                    "top_ranked": None,
                }
            }
        }
        self.data_loaded = True


def resolve_task(
    name: str, data_dir: str | Path | None = None, languages: list[str] | None = None
) -> AbsTaskRetrieval:
    """A local BEIR folder `<data_dir>/<name>` (written in `languages`) when it exists, else mteb's registered
    retrieval task of that name (whose metadata knows its languages)."""
    if data_dir is not None and (Path(data_dir) / name).is_dir():
        return LocalBeirRetrieval.from_folder(Path(data_dir) / name, languages)
    registered = {task.metadata.name.lower(): task.metadata.name for task in mteb.get_tasks(task_types=["Retrieval"])}
    if name.lower() not in registered:
        where = f" nor a folder under {str(data_dir)!r}" if data_dir is not None else ""
        raise ValueError(f"Unknown task {name!r}: not an mteb retrieval task{where}.")
    return mteb.get_task(registered[name.lower()])


def task_languages(task: AbsTaskRetrieval) -> list[str]:
    """The languages a task's scores were measured in (ISO 639 codes; mteb's tasks give ISO 639-3), none when they
    were not recorded."""
    return sorted({language for language in task.metadata.languages if language != "und"})
