"""Checks of a run against the filesystem and the Hub, made before the teacher loads or embeds a single query.

A run that cannot finish as asked (an unwritable folder, a teacher that is not there, a push without access) fails in
seconds with one message and writes nothing, instead of after the teacher pass (hours for a large teacher).
"""

import json
import os
import socket
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from huggingface_hub import constants, try_to_load_from_cache
from safetensors import SafetensorError
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .configuration_asymmetric import validate_layers
from .provenance import is_hub_id
from .run_files import RUN_LOCK, RUN_SETTINGS, TRAINER_STATE, TRAINING_RECORD

WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json")  # a transformers model's weights


def check_writable_dir(path: str | os.PathLike, option: str) -> None:
    """`path` is a folder, or can be created as one, that this process can write into; it is not created here."""
    path = Path(path).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise ValueError(f"--{option} {str(path)!r} is a file, not a folder; choose a folder.")
    existing = next(parent for parent in (path, *path.parents) if parent.exists())
    if not existing.is_dir():
        raise ValueError(f"--{option} {str(path)!r}: {str(existing)!r} is a file, not a folder.")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise ValueError(
            f"--{option} {str(path)!r} is not writable ({error.strerror or error}); choose a writable folder."
        ) from None


def check_spares_a_model(path: str | os.PathLike, option: str = "output_dir") -> None:
    """A recipe that writes a model's files (`config.json`, `modules.json`, weights) into `path` would replace those of
    a saved model there: refused, naming the folder and a subfolder that is safe. A folder holding an earlier export
    (its `onnx/` graphs beside them) may be written again."""
    path = Path(path).expanduser()
    check_writable_dir(path, option)
    owned = [name for name in ("config.json", "modules.json", "model.safetensors") if (path / name).is_file()]
    if owned and not (path / "onnx").is_dir():
        raise ValueError(
            f"--{option} {str(path)!r} holds a saved model ({', '.join(owned)}), which this would overwrite; write "
            f"into another folder, e.g. {str(path / 'onnx-export')!r}."
        )


def check_teacher_reachable(teacher: str, revision: str | None = None, option: str = "teacher") -> None:
    """A local model folder (`--teacher`, or another `option` naming a model) exists with weights; a Hub model is in
    the local Hub cache when the Hub is offline."""
    path = Path(teacher).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"--{option} {teacher!r} is a file; give a model folder or a Hub id.")
        if not any(next(path.glob(pattern), None) for pattern in WEIGHT_FILES):
            raise ValueError(
                f"--{option} {teacher!r} holds no model weights ({', '.join(WEIGHT_FILES)}): save the model there "
                "completely, or give its Hub id."
            )
        return
    if teacher.startswith((".", "/", "~")) or teacher.count("/") > 1 or "\\" in teacher:
        raise ValueError(f"--{option} {teacher!r}: no such folder (a Hub id has the form `namespace/name`).")
    if constants.HF_HUB_OFFLINE and not isinstance(try_to_load_from_cache(teacher, "config.json", revision), str):
        raise ValueError(
            f"--{option} {teacher!r} is not in the local Hub cache and HF_HUB_OFFLINE is set: download it once "
            f"online (`hf download {teacher}`) or unset HF_HUB_OFFLINE."
        )


def check_device(device: str | None) -> None:
    """A device this machine has: `--device cuda` without CUDA (or a malformed name) is one clear error."""
    if device is None:
        return
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise ValueError(f"--device {device!r} is not a device name (e.g. cpu, cuda, cuda:1, mps).") from None
    if kind != "cpu" and not (
        torch.accelerator.is_available() and torch.accelerator.current_accelerator().type == kind
    ):
        raise ValueError(f"--device {device!r}: this machine has no {kind} device; use --device cpu.")


def checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """The complete `checkpoint-N` folders in `output_dir`, oldest first; a folder a killed run left half-written
    (no trainer state yet) is not one."""
    folders = Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*")
    complete = [f for f in folders if f.name.split("-")[-1].isdigit() and (f / TRAINER_STATE).is_file()]
    return sorted(complete, key=lambda folder: int(folder.name.split("-")[-1]))


def resume_checkpoint(output_dir: str | os.PathLike, resume: str | bool | None) -> str | None:
    """The checkpoint `--resume_from_checkpoint` means: the last complete one for `true`, else the folder given."""
    if not resume:
        return None
    if resume is True:
        found = checkpoints(output_dir)
        if not found:
            raise ValueError(
                f"--resume_from_checkpoint true: {str(output_dir)!r} holds no complete checkpoint (a checkpoint-N "
                f"folder with {TRAINER_STATE}); start it over with --overwrite_output_dir true instead."
            )
        return str(found[-1])
    if not Path(resume, TRAINER_STATE).is_file():
        raise ValueError(f"--resume_from_checkpoint {resume!r} is not a complete checkpoint (no {TRAINER_STATE}).")
    return str(resume)


def finished_run(output_dir: str | os.PathLike) -> dict | None:
    """The record of the finished run in `output_dir` (written after its model is saved), or None."""
    record = Path(output_dir, TRAINING_RECORD)
    return json.loads(record.read_text()) if record.is_file() else None


def _holder(lock: Path) -> dict | None:
    """The run holding `lock`, or None when the lock is stale (its process on this host is gone) or unreadable."""
    try:
        holder = json.loads(lock.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if holder.get("host") == socket.gethostname():
        try:
            os.kill(int(holder["pid"]), 0)
        except (ProcessLookupError, ValueError, KeyError, TypeError):
            return None
        except PermissionError:  # another user's live process
            pass
    return holder


def _check_free(output_dir: str | os.PathLike) -> None:
    """A `ValueError` naming the run that holds `output_dir` (pid, host, start), if a live one does."""
    holder = _holder(Path(output_dir) / RUN_LOCK)
    if holder is not None:
        raise ValueError(
            f"--output_dir {str(output_dir)!r} is in use by another run (pid {holder.get('pid')} on "
            f"{holder.get('host')}, started {holder.get('started')}); wait for it, or choose another folder."
        )


@contextmanager
def run_lock(output_dir: str | os.PathLike):
    """Hold `output_dir` for one run: a second run into it is refused with the holder's pid, host and start; a lock
    left by a process that died on this host is taken over. Released when the run ends, however it ends."""
    lock = Path(output_dir) / RUN_LOCK
    lock.parent.mkdir(parents=True, exist_ok=True)
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(2):
        try:
            with open(lock, "x") as f:
                json.dump(mine, f)
            break
        except FileExistsError:
            _check_free(output_dir)
            lock.unlink(missing_ok=True)  # stale: its run died
    else:
        raise ValueError(
            f"--output_dir {str(output_dir)!r}: another run took its lock meanwhile; choose another folder."
        )
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def move_aside(output_dir: str | os.PathLike) -> Path | None:
    """Start a folder over (`--overwrite_output_dir`): the run it holds moves, whole, to `<folder>.replaced-<time>`
    (a rename, nothing copied or lost), so no checkpoint or record of it is resumed or reported as the new run's."""
    path = Path(output_dir)
    if not path.is_dir() or not any(path.iterdir()):
        return None
    _check_free(path)
    aside = path.with_name(f"{path.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    path.rename(aside)
    return aside


def check_resume_settings(output_dir: str | os.PathLike, settings: dict) -> None:
    """A resume continues the run its checkpoints belong to: refused, naming every difference, when the settings it
    was started with (`run_settings.json`) differ from these; a run that recorded none is taken as it is."""
    path = Path(output_dir) / RUN_SETTINGS
    if not path.is_file():
        return
    started = json.loads(path.read_text())
    keys = sorted(settings.keys() | started.keys())
    changed = [
        f"{key} {started.get(key)!r} -> {settings.get(key)!r}" for key in keys if started.get(key) != settings.get(key)
    ]
    if changed:
        raise ValueError(
            f"--resume_from_checkpoint: {str(output_dir)!r} holds a run started with other settings "
            f"({'; '.join(changed)}); resume it with its own settings, or start over with --overwrite_output_dir true."
        )


def write_run_settings(output_dir: str | os.PathLike, settings: dict) -> None:
    """Record what a run is started with, for `check_resume_settings`."""
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    (Path(output_dir) / RUN_SETTINGS).write_text(json.dumps(settings, indent=2))


def run_settings(student_args, data_args, training_args) -> dict:
    """What a run's checkpoints depend on: the teacher and student, the data, and the optimisation."""
    student = (
        "teacher",
        "teacher_revision",
        "student_layers",
        "layer_strategy",
        "num_student_layers",
        "student_model",
        "student_query_prompt",
        "share_token_embeddings",
        "query_prompt",
        "pooling",
    )
    data = (
        "train_queries",
        "queries_subset",
        "queries_split",
        "queries_column",
        "max_train_samples",
        "num_eval_queries",
        "split_seed",
        "joined_query_fraction",
        "joined_query_max",
        "embedding_dtype",
        "train_documents",
        "document_fraction",
        "document_inputs",
        "document_span_tokens",
    )
    training = (
        "loss",
        "learning_rate",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "num_train_epochs",
        "max_steps",
        "warmup_steps",
        "weight_decay",
        "lr_scheduler_type",
        "adam_epsilon",
        "seed",
        "bf16",
        "fp16",
    )
    return {
        name: getattr(args, name)
        for args, names in ((student_args, student), (data_args, data), (training_args, training))
        for name in names
    }


def check_run(student_args, data_args, training_args, check=None) -> tuple[list[str], list[str], list | None]:
    """What a distillation run (`recipes/distill.py`, `recipes/select_layers.py`) can check before the teacher loads:
    folders, the teacher's files, prompts and layers, Hub access for a push, then the queries (read in full) and the
    documents. Returns (training queries, held-out queries, documents or None); a problem raises one `ValueError` or
    `OSError` naming it, and nothing is written."""
    from .data import load_queries, load_query_splits
    from .documents import load_index_documents
    from .hub import check_push_access
    from .teacher import config_from_teacher

    check_writable_dir(training_args.output_dir, "output_dir")
    check_writable_dir(data_args.embedding_cache_dir, "embedding_cache_dir")
    check_teacher_reachable(student_args.teacher, student_args.teacher_revision)
    if student_args.student_model is not None:
        check_teacher_reachable(student_args.student_model, option="student_model")
    config = config_from_teacher(student_args.teacher, "first", 0, **student_args.student_kwargs)
    num_layers = config.student_architecture.num_hidden_layers
    if student_args.student_layers == "auto" and student_args.student_model is not None:
        raise ValueError("student_layers auto ranks the teacher's layers: give the student model's layers instead.")
    if student_args.student_layers not in (None, "auto"):
        validate_layers(
            student_args.student_layers, num_layers, "the student model" if config.student_config else "the teacher"
        )
    elif not 0 <= student_args.num_student_layers <= num_layers:
        raise ValueError(
            f"num_student_layers={student_args.num_student_layers} must be between 0 and the teacher's "
            f"{num_layers} layers."
        )
    if training_args.push_to_hub:
        if not is_hub_id(student_args.base_model or student_args.teacher):
            raise ValueError(
                f"--push_to_hub: the teacher {student_args.teacher!r} is a local path, which the card "
                "cannot name as its base model: pass --base_model <the teacher's Hub id>."
            )
        check_push_access(training_args.hub_model_id, training_args.hub_token)
        if check is not None and check.check_queries:  # the data of the check before the push, read now
            for source in {*check.check_queries, *check.check_documents}:
                load_queries(source, column=check.check_column)
    splits = load_query_splits(data_args, training_args.seed)
    return (*splits, load_index_documents(data_args))


@contextmanager
def write_errors(output_dir: str):
    """A write that fails in the output folder (a full disk) ends the run with one line: what failed, and that the
    last complete checkpoint resumes it."""
    try:
        yield
    except (OSError, SafetensorError) as error:
        sys.exit(
            f"error: writing into {output_dir} failed ({error}); free space there, then rerun with "
            "--resume_from_checkpoint true to continue from its last complete checkpoint."
        )
