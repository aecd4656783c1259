"""Model cards generated from a run's facts: config, parameter counts, training record, eval and speed results."""

import json
import logging
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers.utils import cached_file

from .benchmark import SpeedResults
from .configuration_asymmetric import HEAD_MODULES
from .export import SERVING_BACKENDS
from .modeling_asymmetric import AsymmetricDualEncoder
from .provenance import is_hub_id, source_name
from .run_files import AGREEMENT_FILE, EVAL_RESULTS, EXPORTED_EVAL_RESULTS, SPEED_RESULTS, TRAINING_RECORD

logger = logging.getLogger(__name__)

TEMPLATE = Path(__file__).parent / "templates" / "model_card.md"
TAGS = ["hfdistill", "sentence-transformers", "feature-extraction", "mteb", "dense-retrieval", "query-encoder"]


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError:
        logger.warning("Ignoring unreadable %s in the model card.", path)
        return None


def _dataset_fields(name: str, dataset: str | None) -> dict:
    """model-index dataset fields: a Hub dataset by its id; a local set by its name, said to be local, so the card
    never passes a local copy off as the Hub dataset."""
    if dataset is not None and is_hub_id(dataset):
        return {"dataset_type": dataset, "dataset_name": name}
    return {"dataset_type": name, "dataset_name": f"{name} (local BEIR-format set)"}


def _describe_source(source: str) -> str:
    """Training text in the card: a Hub dataset linked by id, a local file by its folder and name only."""
    if is_hub_id(source):
        return f"[{source}](https://huggingface.co/datasets/{source})"
    return f"a local file (`{source_name(source)}`)"


def describe_head(head: list[dict]) -> str:
    """The teacher's head in words: `mean pooling, Dense 384 -> 768 (Tanh), L2 normalization`."""
    return ", ".join(HEAD_MODULES[module["type"]].describe(module["config"]) for module in head)


def speed_rows(results: SpeedResults) -> dict:
    """The card's view of a benchmark: per batch size the teacher's and student's queries/s and the speed-up, batch-1
    latency, and per other backend the student's queries/s against the torch teacher and the same-backend teacher."""
    teacher, student = results.encoder("teacher"), results.encoder("student")
    backends = {
        backend: [
            {
                "batch_size": batch,
                "student": results.encoder("student", backend).throughput_qps[batch],
                "vs_torch": results.speedup(results.encoder("student", backend), batch),
                "vs_same": results.speedup(results.encoder("student", backend), batch, backend),
            }
            for batch in results.batch_sizes
        ]
        for backend in results.backends[1:]
    }
    return {
        "device": results.device,
        "threads": results.threads,
        "repeats": results.repeats,
        "rows": [
            {
                "batch_size": batch,
                "teacher": teacher.throughput_qps[batch],
                "student": student.throughput_qps[batch],
                "speedup": results.speedup(student, batch),
            }
            for batch in results.batch_sizes
        ],
        "latency": {
            "teacher": teacher.latency_p50_ms,
            "student": student.latency_p50_ms,
            "speedup": results.latency_speedup(student),
        },
        "backends": backends,
    }


def measured_languages(training: dict | None, results: list[dict]) -> list[str]:
    """The languages a card may claim: those of the training text (`train_languages`) and of the tasks the student
    was evaluated on; never the teacher's list, which the student was not checked against."""
    languages = set((training or {}).get("train_languages") or [])
    for result in results:
        languages.update(code for task in result.get("tasks", {}).values() for code in task.get("languages", []))
    return sorted(languages)


def _source_stem(source: str) -> str:
    """The name a data source goes by: a Hub id's name, a local corpus file's folder, a local folder's name."""
    if is_hub_id(source):
        return source.split("/")[-1].lower()
    path = Path(source)
    return (path.parent if path.suffix else path).name.lower()


def corpus_adapted_tasks(training: dict | None, eval_results: dict | None) -> list[str]:
    """The evaluated tasks whose corpus the student trained on (`train_documents`): their retention is measured on
    the index it was adapted to, and the card says so. A task matches a document source by name (its dataset folder,
    or a Hub dataset's name)."""
    sources = {_source_stem(source) for source in (training or {}).get("train_documents") or []}
    return [
        name
        for name, task in (eval_results or {}).get("tasks", {}).items()
        if {name.lower(), _source_stem(str(task.get("dataset") or name))} & sources
    ]


def teacher_card_data(config) -> dict:
    """The teacher's `license` and `language` from its own card's metadata (the student repository redistributes its
    weights under them); `{}` where that card cannot be read."""
    path = cached_file(
        config.teacher_name_or_path,
        "README.md",
        revision=config.teacher_revision,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
    )
    if path is None:
        return {}
    try:
        data = ModelCard.load(path).data
    except Exception as error:  # noqa: BLE001 - an unreadable teacher card only leaves the fields unknown
        logger.warning("Could not read the teacher's card %s: %s", path, error)
        return {}
    return {key: getattr(data, key) for key in ("license", "language") if getattr(data, key, None)}


def teacher_base_model(model_dir: str | Path, config, base_model: str | None = None) -> str:
    """What a card names as the teacher: `base_model`, else the Hub id the run recorded for a teacher loaded from a
    local copy (`--base_model`), else where the teacher was loaded from."""
    training = _read_json(Path(model_dir) / TRAINING_RECORD) or {}
    return base_model or training.get("base_model") or config.teacher_name_or_path


def build_model_card(
    model: AsymmetricDualEncoder,
    model_dir: str | Path,
    repo_id: str | None = None,
    base_model: str | None = None,
    layout: str = "router",
) -> ModelCard:
    """The card of the student saved in `model_dir`, from its config and the JSON records found there. `base_model`
    is the teacher's Hub id where it was loaded from a local copy; a local path is never written as the base model
    or linked. `layout` is what the folder holds: `router` (the student and its teacher, one model) or
    `query_encoder` (the student alone, a plain model, with its ONNX graphs where exported)."""
    model_dir = Path(model_dir)
    config = model.config
    repo_id = repo_id or str(model_dir)
    eval_results = _read_json(model_dir / EVAL_RESULTS)
    training = _read_json(model_dir / TRAINING_RECORD)
    exported_eval_results = {
        backend: result
        for backend in SERVING_BACKENDS
        if (result := _read_json(model_dir / EXPORTED_EVAL_RESULTS.format(backend))) is not None
    }
    speed = _read_json(model_dir / SPEED_RESULTS)
    speed = SpeedResults.from_dict(speed) if speed else None
    agreement = _read_json(model_dir / AGREEMENT_FILE)
    if isinstance(agreement, dict):  # one set, as checks before several sets were recorded
        agreement = [agreement]
    has_sentence_transformers = (model_dir / "modules.json").is_file()
    inherited = teacher_card_data(config)
    base = teacher_base_model(model_dir, config, base_model)
    languages = measured_languages(training, [eval_results or {}, *exported_eval_results.values()])
    card_data = ModelCardData(
        license=inherited.get("license"),
        language=languages or None,
        model_name=repo_id.split("/")[-1] if eval_results else None,  # the model-index name, with results only
        library_name="sentence-transformers" if has_sentence_transformers else "transformers",
        pipeline_tag="feature-extraction",
        base_model=base if is_hub_id(base) else None,
        tags=TAGS,
        datasets=[
            source
            for source in [training["train_queries"], *(training.get("train_documents") or [])]
            if is_hub_id(source)
        ]
        or None
        if training
        else None,
        eval_results=[
            EvalResult(
                task_type="retrieval",
                **_dataset_fields(name, task.get("dataset")),
                dataset_split="test",
                metric_type="ndcg_at_10",
                metric_value=round(task["student"]["ndcg_at_10"], 5),
            )
            for name, task in (eval_results or {}).get("tasks", {}).items()
        ]
        or None,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        teacher=base,
        teacher_on_hub=is_hub_id(base),
        teacher_copy=config.teacher_name_or_path if base != config.teacher_name_or_path else None,
        teacher_revision=config.teacher_revision,
        student_layers=list(config.student_layers),
        num_student_layers=len(config.student_layers),
        num_teacher_layers=config.teacher_config.num_hidden_layers,
        head=describe_head(config.head),
        query_prompt=config.query_prompt,
        document_prompt=config.document_prompt,
        student_prompt=config.student_prompt,
        similarity=config.similarity,
        max_length=config.max_length,
        student_parameters=sum(p.numel() for p in model.query_parameters()),
        teacher_parameters=sum(
            p.numel() for p in [*model.document_encoder.parameters(), *model.document_head.parameters()]
        ),
        eval_results=eval_results,
        adapted=corpus_adapted_tasks(training, eval_results),
        exported_eval_results=exported_eval_results,
        speed=speed_rows(speed) if speed else None,
        onnx_backends=sorted({*exported_eval_results, *(speed.backends[1:] if speed else [])}),
        training=training,
        layout=layout,
        onnx_files=sorted(str(p.relative_to(model_dir)) for p in (model_dir / "onnx").glob("*.onnx")),
        train_queries=_describe_source(training["train_queries"]) if training else None,
        train_documents=[_describe_source(source) for source in (training or {}).get("train_documents") or []],
        languages=languages,
        teacher_languages=[inherited["language"]]
        if isinstance(inherited.get("language"), str)
        else inherited.get("language"),
        has_sentence_transformers=has_sentence_transformers,
        agreement=agreement,
        license=inherited.get("license"),
        student_model=config.student_name_or_path,
        num_student_model_layers=config.student_architecture.num_hidden_layers,
        share_token_embeddings=config.share_token_embeddings,
    )


def write_model_card(
    model: AsymmetricDualEncoder,
    model_dir: str | Path,
    repo_id: str | None = None,
    base_model: str | None = None,
    layout: str = "router",
) -> Path | None:
    """Render and save README.md; a card problem is logged, never raised, so it cannot break training or a push."""
    try:
        path = Path(model_dir) / "README.md"
        build_model_card(model, model_dir, repo_id, base_model, layout).save(path)
        return path
    except Exception as error:  # noqa: BLE001 - the card is documentation, never a reason to fail
        logger.warning("Could not write the model card in %s: %s", model_dir, error)
        return None
