"""Where a result came from: the packages, code commit and time an evaluation, benchmark or training run used, written
beside its numbers (as `evaluate.save` would; hfdistill does not depend on `evaluate` for this one record)."""

import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "hfdistill",
    "torch",
    "transformers",
    "sentence-transformers",
    "mteb",
    "datasets",
    "accelerate",
    "huggingface-hub",
    "safetensors",
    "onnxruntime",
)


def _version(package: str) -> str | None:
    if package == "hfdistill":  # the code in use, even from a checkout whose installed metadata is older
        from . import __version__

        return __version__
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _commit() -> str | None:
    """The git commit of the hfdistill checkout in use, `+dirty` when it has uncommitted changes; None outside git."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if dirty else commit


def environment() -> dict:
    """The record: UTC time, Python and platform, package versions (None where not installed) and the commit."""
    return {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {package: _version(package) for package in PACKAGES},
        "hfdistill_commit": _commit(),
    }


def is_hub_id(name: str) -> bool:
    """A Hub repository id (`owner/name`), not a local file or folder that a card or record should not point to."""
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).exists()


def source_name(source: str) -> str:
    """How a record or card names a data source: a Hub id as it is, a local file by its folder and name (never the
    local path above it)."""
    if is_hub_id(source):
        return source
    path = Path(source)
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def training_record(student_args, data_args, training_args, trainer, counts, untrained, metrics, selection) -> dict:
    """What `distillation.json` records of a finished run: the data, the recipe, and held-out alignment."""
    return {
        "base_model": student_args.base_model,
        "train_queries": data_args.train_queries,
        **counts,
        "joined_query_fraction": data_args.joined_query_fraction,
        "joined_query_max": data_args.joined_query_max,
        "train_documents": data_args.train_documents,
        "document_inputs": data_args.document_inputs if counts["num_documents"] else None,
        "document_fraction": data_args.document_fraction if counts["num_documents"] else None,
        "document_span_tokens": data_args.document_span_tokens if counts["num_documents"] else None,
        "train_languages": data_args.train_languages,
        "embedding_dtype": data_args.embedding_dtype,
        "loss": training_args.loss,
        "share_token_embeddings": student_args.share_token_embeddings,
        "student_query_prompt": student_args.student_query_prompt,
        "learning_rate": training_args.learning_rate,
        "adam_epsilon": training_args.adam_epsilon,
        "batch_size": training_args.per_device_train_batch_size * trainer.accelerator.num_processes,
        "train_sampling_strategy": training_args.train_sampling_strategy,
        "warmup_steps": training_args.warmup_steps,
        "num_train_epochs": training_args.num_train_epochs,
        "global_steps": trainer.state.global_step,
        "untrained_mean_cosine": untrained["untrained_mean_cosine"],
        "mean_cosine": metrics["eval_mean_cosine"],
        "layer_selection": selection,
        "environment": environment(),
    }
