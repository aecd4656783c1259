"""Checks of a run against the filesystem and the Hub, made before the teacher loads or embeds a single query.

A run that cannot finish as asked (an unwritable folder, a teacher that is not there, a push without access) fails in
seconds with one message and writes nothing, instead of after the teacher pass (hours for a large teacher).
"""

import json
import os
import tempfile
from pathlib import Path

from huggingface_hub import constants, try_to_load_from_cache
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .model_card import TRAINING_RECORD

TRAINER_STATE = "trainer_state.json"  # Trainer writes it last into a checkpoint: its presence marks one complete
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


def check_teacher_reachable(teacher: str, revision: str | None = None) -> None:
    """A local teacher folder exists; a Hub teacher is in the local Hub cache when the Hub is offline."""
    path = Path(teacher).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"--teacher {teacher!r} is a file; give a model folder or a Hub id.")
        if not any(next(path.glob(pattern), None) for pattern in WEIGHT_FILES):
            raise ValueError(
                f"--teacher {teacher!r} holds no model weights ({', '.join(WEIGHT_FILES)}): save the teacher there "
                "completely, or give its Hub id."
            )
        return
    if teacher.startswith((".", "/", "~")) or teacher.count("/") > 1 or "\\" in teacher:
        raise ValueError(f"--teacher {teacher!r}: no such folder (a Hub id has the form `namespace/name`).")
    if constants.HF_HUB_OFFLINE and not isinstance(try_to_load_from_cache(teacher, "config.json", revision), str):
        raise ValueError(
            f"--teacher {teacher!r} is not in the local Hub cache and HF_HUB_OFFLINE is set: download it once "
            f"online (`hf download {teacher}`) or unset HF_HUB_OFFLINE."
        )


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
                f"folder with {TRAINER_STATE}); start the run without it."
            )
        return str(found[-1])
    if not Path(resume, TRAINER_STATE).is_file():
        raise ValueError(f"--resume_from_checkpoint {resume!r} is not a complete checkpoint (no {TRAINER_STATE}).")
    return str(resume)


def finished_run(output_dir: str | os.PathLike) -> dict | None:
    """The record of the finished run in `output_dir` (written after its model is saved), or None."""
    record = Path(output_dir, TRAINING_RECORD)
    return json.loads(record.read_text()) if record.is_file() else None
