"""Where a result came from: the packages, code commit and time an evaluation, benchmark or training run used, written
beside its numbers (as `evaluate.save` would; hfdistill does not depend on `evaluate` for this one record)."""

import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

PACKAGES = ("hfdistill", "torch", "transformers", "sentence-transformers", "mteb", "datasets", "accelerate",
            "huggingface-hub", "safetensors", "onnxruntime")  # fmt: skip


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
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()  # fmt: skip
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
