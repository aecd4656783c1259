"""Retrieval evaluation through mteb: queries go to the student, documents to the cached teacher; retention report."""

import hashlib
import json
import logging
import time
from pathlib import Path

import mteb
import torch
from datasets import Dataset
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.task_metadata import TaskMetadata
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta, ScoringFunction
from mteb.types import PromptType
from transformers import PreTrainedConfig

from .data import open_text
from .embedding_cache import cached_teacher_embeddings, fingerprint, teacher_fingerprint
from .metrics import RETRIEVAL_NDCG
from .modeling_asymmetric import AsymmetricDualEncoder

logger = logging.getLogger(__name__)

METRICS = ("ndcg_at_10", "recall_at_100", "mrr_at_10")
BEIR_FILES = ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv")


class AsymmetricEncoder(AbsEncoder):
    """mteb encoder protocol for an `AsymmetricDualEncoder`.

    Documents (and, with `role="teacher"`, queries too) are encoded by the frozen teacher and cached on disk, keyed by
    the teacher's identity and the exact texts, so a second student re-encodes only its queries. `query_encoder`
    replaces the student's torch `encode_queries` (e.g. an exported ONNX or int8 one, `export.OnnxQueryEncoder`).
    """

    def __init__(
        self,
        model: AsymmetricDualEncoder,
        name: str,
        role: str = "student",
        cache_dir: str | Path = "~/.cache/hfdistill/embeddings",
        batch_size: int = 64,
        query_encoder=None,
    ):
        if role not in ("student", "teacher"):
            raise ValueError(f"role must be 'student' or 'teacher', got {role!r}.")
        self.model, self.role, self.cache_dir, self.batch_size = model, role, cache_dir, batch_size
        self.encode_queries = query_encoder.encode_queries if query_encoder is not None else model.encode_queries
        revision = model.config.teacher_revision if role == "teacher" else None
        self.mteb_model_meta = ModelMeta.create_empty(
            overwrites={
                "name": name,
                "revision": revision or "local",
                "similarity_fn_name": ScoringFunction(model.config.similarity),
                "embed_dim": model.config.embedding_dim,
                "max_tokens": model.config.max_length,
                "framework": ["PyTorch"],
            }
        )

    def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs):
        texts = [text for batch in inputs for text in batch["text"]]
        side = "document" if prompt_type == PromptType.document else "query"
        if self.role == "teacher" or side == "document":  # each side with the teacher's own prompt for it
            return cached_teacher_embeddings(
                self.model, texts, self.cache_dir, self.batch_size, prompt_type=side
            ).numpy()
        return self.encode_queries(texts, self.batch_size, show_progress_bar=True).numpy()


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
    def from_folder(cls, folder: str | Path) -> "LocalBeirRetrieval":
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
            eval_langs=["eng-Latn"],
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


def load_student(name_or_path: str, **kwargs) -> AsymmetricDualEncoder:
    """Load an hfdistill student, with a clear error for anything else."""
    config_dict, _ = PreTrainedConfig.get_config_dict(name_or_path, **kwargs)
    model_type = config_dict.get("model_type")
    if model_type != AsymmetricDualEncoder.config_class.model_type:
        raise ValueError(
            f"{name_or_path!r} is not an hfdistill student (model_type={model_type!r}); distill one with "
            "recipes/distill.py or build it with AsymmetricDualEncoder.from_teacher."
        )
    return AsymmetricDualEncoder.from_pretrained(name_or_path, **kwargs)


def resolve_task(name: str, data_dir: str | Path | None = None) -> AbsTaskRetrieval:
    """A local BEIR folder `<data_dir>/<name>` when it exists, else mteb's registered retrieval task of that name."""
    if data_dir is not None and (Path(data_dir) / name).is_dir():
        return LocalBeirRetrieval.from_folder(Path(data_dir) / name)
    registered = {task.metadata.name.lower(): task.metadata.name for task in mteb.get_tasks(task_types=["Retrieval"])}
    if name.lower() not in registered:
        where = f" nor a folder under {str(data_dir)!r}" if data_dir is not None else ""
        raise ValueError(f"Unknown task {name!r}: not an mteb retrieval task{where}.")
    return mteb.get_task(registered[name.lower()])


def retrieval_scores(encoder: AsymmetricEncoder, task: AbsTaskRetrieval) -> dict[str, float]:
    """nDCG@10, recall@100 and MRR@10 of `encoder` on the task's test split, computed by mteb."""
    result = mteb.evaluate(encoder, task, cache=None, show_progress_bar=False)
    scores = result.task_results[0].scores["test"][0]
    return {metric: float(scores[metric]) for metric in METRICS}


def _task_key(task: AbsTaskRetrieval) -> str:
    return f"{task.metadata.name}-{task.metadata.dataset['revision']}"


def teacher_scores(
    model: AsymmetricDualEncoder, task: AbsTaskRetrieval, cache_dir: str | Path, batch_size: int = 64
) -> dict[str, float]:
    """The teacher's own scores on the task, cached on disk by teacher identity and task fingerprint."""
    config = model.config
    key_fields = {**teacher_fingerprint(model), "task": _task_key(task)}
    if config.query_prompt or config.document_prompt:  # prompt-free teachers keep their earlier keys
        key_fields.update(query_prompt=config.query_prompt, document_prompt=config.document_prompt)
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:32]
    path = Path(cache_dir).expanduser() / f"teacher-scores-{key}.json"
    if path.is_file():
        try:
            cached = json.loads(path.read_text())
            if cached.get("key") == key and set(METRICS) <= set(cached["scores"]):
                return cached["scores"]
        except (json.JSONDecodeError, KeyError, TypeError):
            pass
    encoder = AsymmetricEncoder(
        model, f"teacher/{model.config.teacher_name_or_path}", "teacher", cache_dir, batch_size
    )
    scores = retrieval_scores(encoder, task)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, **key_fields, "scores": scores}, indent=2))
    return scores


def evaluate_student(
    model: AsymmetricDualEncoder,
    name: str,
    tasks: list[AbsTaskRetrieval],
    cache_dir: str | Path = "~/.cache/hfdistill/embeddings",
    batch_size: int = 64,
    query_encoder=None,
) -> dict:
    """Teacher and student scores per task and the paper's retention (student nDCG@10 / teacher nDCG@10, mean);
    `query_encoder` scores an exported query encoder of the student instead of its torch one."""
    report = {
        "teacher": model.config.teacher_name_or_path,
        "student": name,
        "student_layers": list(model.config.student_layers),
        "tasks": {},
    }
    for task in tasks:
        start = time.perf_counter()
        teacher = teacher_scores(model, task, cache_dir, batch_size)
        student = retrieval_scores(
            AsymmetricEncoder(model, name, "student", cache_dir, batch_size, query_encoder), task
        )
        report["tasks"][task.metadata.name] = {
            "teacher": teacher,
            "student": student,
            "retention": student["ndcg_at_10"] / teacher["ndcg_at_10"] if teacher["ndcg_at_10"] else 0.0,
            "seconds": round(time.perf_counter() - start, 1),
        }
    retentions = [t["retention"] for t in report["tasks"].values()]
    report["mean_retention"] = sum(retentions) / len(retentions)
    return report


def format_report(report: dict) -> str:
    """A terminal table of one student's report."""
    lines = [
        f"student {report['student']} (layers {report['student_layers']}) vs teacher {report['teacher']}",
        f"{'task':<20}{'teacher nDCG@10':>16}{'student nDCG@10':>16}{'retention':>11}{'R@100 t/s':>16}",
    ]
    for name, t in report["tasks"].items():
        recall = f"{t['teacher']['recall_at_100']:.3f}/{t['student']['recall_at_100']:.3f}"
        lines.append(
            f"{name:<20}{t['teacher']['ndcg_at_10']:>16.4f}{t['student']['ndcg_at_10']:>16.4f}"
            f"{t['retention']:>10.1%}{recall:>16}"
        )
    lines.append(f"{'mean retention':<52}{report['mean_retention']:>11.1%}")
    return "\n".join(lines)


def document_text(document: dict) -> str:
    """A document as mteb feeds it to encoders: title and text joined."""
    title, text = document.get("title") or "", document.get("text") or ""
    return f"{title} {text}".strip() if title else text.strip()


class RetrievalEvaluator:
    """nDCG@10 and retention of the student during training on a BEIR-format folder.

    Documents and the teacher's queries are encoded once (cached like in `evaluate_student`); each call encodes only
    the student's queries, searches exactly, and scores the run with the shipped `evaluate` metric.
    """

    def __init__(self, folder: str | Path, cache_dir: str | Path, batch_size: int = 64, top_k: int = 100):
        self.data = read_beir_folder(folder)
        self.doc_ids = list(self.data["corpus"])
        self.doc_texts = [document_text(self.data["corpus"][d]) for d in self.doc_ids]
        self.query_texts = list(self.data["queries"].values())
        self.references = [
            {"doc_ids": list(qrels), "relevance": list(qrels.values())} for qrels in self.data["qrels"].values()
        ]
        self.cache_dir, self.batch_size, self.top_k = cache_dir, batch_size, top_k
        self.teacher_ndcg: float | None = None  # the teacher is frozen: scored once
        import evaluate  # here, not at the top: recipes/evaluate.py shadows the library for recipes run as scripts

        self.metric = evaluate.load(RETRIEVAL_NDCG)

    def _scores(self, model: AsymmetricDualEncoder, queries: torch.Tensor) -> dict[str, float]:
        documents = cached_teacher_embeddings(
            model, self.doc_texts, self.cache_dir, self.batch_size, prompt_type="document"
        )
        if model.config.similarity == "cosine":
            queries, documents = (torch.nn.functional.normalize(x, dim=-1) for x in (queries, documents))
        top = (queries @ documents.T).topk(min(self.top_k, len(self.doc_ids)), dim=-1)
        predictions = [
            {"doc_ids": [self.doc_ids[j] for j in indices], "scores": scores}
            for scores, indices in zip(top.values.tolist(), top.indices.tolist())
        ]
        return self.metric.compute(predictions=predictions, references=self.references)

    def __call__(self, model: AsymmetricDualEncoder) -> dict[str, float]:
        if self.teacher_ndcg is None:
            teacher_queries = cached_teacher_embeddings(model, self.query_texts, self.cache_dir, self.batch_size)
            self.teacher_ndcg = self._scores(model, teacher_queries)["ndcg_at_10"]
        teacher = self.teacher_ndcg
        student = self._scores(model, model.encode_queries(self.query_texts, self.batch_size))["ndcg_at_10"]
        return {
            "ndcg_at_10": student,
            "teacher_ndcg_at_10": teacher,
            "retention": student / teacher if teacher else 0.0,
        }
