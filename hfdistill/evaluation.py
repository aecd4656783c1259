"""Retrieval evaluation through mteb: queries go to the student, documents to the cached teacher; retention report."""

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import mteb
import torch
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta, ScoringFunction
from mteb.types import PromptType

from .cascade import CascadeQueryEncoder, document_texts
from .embedding_cache import CACHE_VERSION, DEFAULT_CACHE_DIR, teacher_fingerprint
from .modeling_asymmetric import AsymmetricDualEncoder
from .persistence import check_side
from .provenance import environment
from .retrieval_tasks import LocalBeirRetrieval, task_languages
from .teacher_pass import cached_teacher_embeddings

logger = logging.getLogger(__name__)

METRICS = ("ndcg_at_10", "recall_at_100", "mrr_at_10")


class AsymmetricEncoder(AbsEncoder):
    """mteb encoder protocol for an `AsymmetricDualEncoder`.

    Documents (and, with `side="teacher"`, queries too) are encoded by the frozen teacher and cached on disk, keyed by
    the teacher's identity and the exact texts, so a second student re-encodes only its queries. `query_encoder`
    replaces the student's torch `encode_queries` (an exported ONNX one, or a baseline: `query_encoders`). With
    `cascade_rate`, the queries are a `CascadeQueryEncoder`'s: the student's, with the teacher's for the
    `cascade_rate` of them it is least sure of on `task`'s corpus (calibrated on the queries themselves, no labels);
    `routed` then holds the share routed in each of the task's subsets.
    """

    def __init__(
        self,
        model: AsymmetricDualEncoder,
        name: str,
        side: str = "student",
        cache_dir: str | Path = DEFAULT_CACHE_DIR,
        batch_size: int = 64,
        query_encoder=None,
        cascade_rate: float | None = None,
        task: AbsTaskRetrieval | None = None,
    ):
        check_side(side)
        if cascade_rate is not None and (side != "student" or task is None):
            raise ValueError("A cascade encodes the student's queries of one task: give side='student' and task.")
        self.model, self.side, self.cache_dir, self.batch_size = model, side, cache_dir, batch_size
        self.query_encoder, self.cascade_rate, self.task, self.routed = query_encoder, cascade_rate, task, []
        self.encode_queries = query_encoder.encode_queries if query_encoder is not None else model.encode_queries
        revision = model.config.teacher_revision if side == "teacher" else None
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
        kind = "document" if prompt_type == PromptType.document else "query"
        if self.side == "teacher" or kind == "document":  # each with the teacher's own prompt for it
            return cached_teacher_embeddings(
                self.model, texts, self.cache_dir, self.batch_size, prompt_type=kind
            ).numpy()
        if self.cascade_rate is not None:
            return self.cascade(texts, self.task.dataset[hf_subset][hf_split]["corpus"]).numpy()
        return self.encode_queries(texts, self.batch_size, show_progress_bar=True).numpy()

    def cascade(self, queries: list[str], corpus) -> torch.Tensor:
        """The cascade's embeddings of `queries` over `corpus`, its threshold set from the queries themselves."""
        documents = cached_teacher_embeddings(
            self.model, document_texts(corpus), self.cache_dir, self.batch_size, prompt_type="document"
        )
        cascade = CascadeQueryEncoder(self.model, documents, query_encoder=self.query_encoder)
        cascade.calibrate(queries, self.cascade_rate, self.batch_size)
        embeddings = cascade.encode_queries(queries, self.batch_size)
        self.routed.append(float(cascade.routed.float().mean()))
        return embeddings


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
    key_fields = {
        **teacher_fingerprint(model),
        "version": CACHE_VERSION,
        "task": _task_key(task),
        "query_prompt": config.query_prompt,
        "document_prompt": config.document_prompt,
    }
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
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # written whole, then renamed: never a truncated file
    try:
        partial.write_text(json.dumps({"key": key, **key_fields, "scores": scores}, indent=2))
        partial.replace(path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        logger.warning(
            "The teacher's scores could not be cached in %s (%s); they are recomputed next time.",
            path.parent,
            error.strerror or error,
        )
    return scores


def evaluate_student(
    model: AsymmetricDualEncoder,
    name: str,
    tasks: list[AbsTaskRetrieval],
    cache_dir: str | Path = DEFAULT_CACHE_DIR,
    batch_size: int = 64,
    query_encoder=None,
    cascade_rate: float | None = None,
) -> dict:
    """Teacher and student scores per task and the paper's retention (student nDCG@10 / teacher nDCG@10, mean);
    `query_encoder` (`query_encoders.load_query_encoder`) is scored instead of the student's torch one. With
    `cascade_rate`, a cascade is scored: the student answers, the teacher's query encoder the `cascade_rate` of each
    task's queries the student is least sure of (`CascadeQueryEncoder`); each task records the share routed."""
    if query_encoder is not None and (dim := query_encoder.config["embedding_dim"]) != model.config.embedding_dim:
        raise ValueError(
            f"The query encoder gives {dim}-d embeddings and the teacher {model.config.teacher_name_or_path} "
            f"{model.config.embedding_dim}-d: they cannot be compared."
        )
    if cascade_rate is not None and not 0 <= cascade_rate <= 1:
        raise ValueError(f"cascade_rate is the share of queries routed to the teacher, 0 to 1; got {cascade_rate}.")
    report = {
        "teacher": model.config.teacher_name_or_path,
        "student": name,
        "student_layers": list(model.config.student_layers),
        "tasks": {},
    }
    for task in tasks:
        start = time.perf_counter()
        teacher = teacher_scores(model, task, cache_dir, batch_size)
        encoder = AsymmetricEncoder(model, name, "student", cache_dir, batch_size, query_encoder, cascade_rate, task)
        student = retrieval_scores(encoder, task)
        report["tasks"][task.metadata.name] = {
            "dataset": task.metadata.dataset["path"],  # a Hub id, or the local folder
            "languages": task_languages(task),
            "teacher": teacher,
            "student": student,
            "retention": student["ndcg_at_10"] / teacher["ndcg_at_10"] if teacher["ndcg_at_10"] else 0.0,
            "seconds": round(time.perf_counter() - start, 1),
        }
        if cascade_rate is not None:
            report["tasks"][task.metadata.name]["routed"] = sum(encoder.routed) / len(encoder.routed)
    retentions = [t["retention"] for t in report["tasks"].values()]
    report["mean_retention"] = sum(retentions) / len(retentions)
    if cascade_rate is not None:
        report["cascade_rate"] = cascade_rate
    report["environment"] = environment()
    return report


def format_report(report: dict) -> str:
    """A terminal table of one student's report."""
    layers = "its own model" if report["student_layers"] is None else f"layers {report['student_layers']}"
    lines = [
        f"student {report['student']} ({layers}) vs teacher {report['teacher']}",
        f"{'task':<20}{'teacher nDCG@10':>16}{'student nDCG@10':>16}{'retention':>11}{'R@100 t/s':>16}",
    ]
    for name, t in report["tasks"].items():
        recall = f"{t['teacher']['recall_at_100']:.3f}/{t['student']['recall_at_100']:.3f}"
        lines.append(
            f"{name:<20}{t['teacher']['ndcg_at_10']:>16.4f}{t['student']['ndcg_at_10']:>16.4f}"
            f"{t['retention']:>10.1%}{recall:>16}"
        )
    lines.append(f"{'mean retention':<52}{report['mean_retention']:>11.1%}")
    if "cascade_rate" in report:
        routed = ", ".join(f"{name} {t['routed']:.1%}" for name, t in report["tasks"].items())
        lines.append(f"a cascade: the teacher encoded the queries the student was least sure of ({routed})")
    return "\n".join(lines)


class RetrievalEvaluator:
    """nDCG@10 and retention of the student during training on a BEIR-format folder, scored as `recipes/evaluate.py`
    scores them (`evaluate_student`): the teacher's documents and scores are cached, each call encodes only the
    student's queries."""

    def __init__(self, folder: str | Path, cache_dir: str | Path, batch_size: int = 64):
        self.task = LocalBeirRetrieval.from_folder(folder)
        self.cache_dir, self.batch_size = cache_dir, batch_size

    def __call__(self, model: AsymmetricDualEncoder) -> dict[str, float]:
        report = evaluate_student(model, "student", [self.task], self.cache_dir, self.batch_size)
        (scores,) = report["tasks"].values()
        return {
            "ndcg_at_10": scores["student"]["ndcg_at_10"],
            "teacher_ndcg_at_10": scores["teacher"]["ndcg_at_10"],
            "retention": scores["retention"],
        }
