"""Publishing a student to the Hub: one commit of safetensors weights, config, tokenizer, code, card and results.

Transient failures (5xx, dropped connections) are retried by huggingface_hub; authentication problems and exhausted
retries raise a `PushError` that says what to do. The local model folder is never modified: files are staged in a
temporary copy.
"""

import json
import logging
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from huggingface_hub import HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError

from .embedding_cache import DEFAULT_CACHE_DIR
from .export import save_query_encoder
from .model_card import teacher_base_model, write_model_card
from .modeling_asymmetric import AsymmetricDualEncoder
from .provenance import is_hub_id
from .run_files import AGREEMENT_FILE, ENCODER_FILE, RESULT_FILES

logger = logging.getLogger(__name__)

UPLOAD_PATTERNS = [  # what a student's folder holds for the Hub: the model, its code, card and results
    "*.safetensors",
    "config.json",
    "*.py",
    "README.md",
    "tokenizer*",
    "vocab.txt",
    "merges.txt",
    "special_tokens_map.json",
    "sentencepiece.bpe.model",
    "modules.json",
    "router_config.json",
    "config_sentence_transformers.json",
    "query_*/*",
    "document_*/*",
    "student_tokenizer/*",
    AGREEMENT_FILE,
    *RESULT_FILES,
]
LOGIN_HELP = "log in with `hf auth login` (or set HF_TOKEN) using a token with write access"


class PushError(RuntimeError):
    """A push that cannot succeed as asked; the message says how to fix it."""


LAYOUTS = ("router", "query_encoder")  # the student with its teacher (one model), or the query encoder alone


def stage_for_hub(
    model: AsymmetricDualEncoder,
    model_dir: str | Path,
    staging: Path,
    repo_id: str,
    agreement: list[dict] | None = None,
    base_model: str | None = None,
    layout: str = "router",
    query_encoder: str | Path | None = None,
) -> None:
    """Copy what a Hub repo needs into `staging`, with the agreement check made before this push and a card; no
    checkpoints or training state. `router`: the saved student as it is (its one layout serves transformers and
    sentence-transformers, the teacher inside as the document encoder). `query_encoder`: the student's query encoder
    alone as a plain model (`export.save_query_encoder`), or the `recipes/export.py` folder `query_encoder` with its
    ONNX graphs, beside the student's results."""
    if layout == "router":
        shutil.copytree(
            model_dir,
            staging,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("checkpoint-*", "*.bin", "*.pt", "*.pth"),
        )
    elif query_encoder is not None:  # its own card and results would not be this repo's
        ignore = shutil.ignore_patterns("README.md", AGREEMENT_FILE, *RESULT_FILES)
        shutil.copytree(query_encoder, staging, dirs_exist_ok=True, ignore=ignore)
    else:
        save_query_encoder(model, staging)
    if layout == "query_encoder":
        for pattern in RESULT_FILES:
            for path in Path(model_dir).glob(pattern):
                shutil.copy(path, staging)
    if agreement is not None:
        (staging / AGREEMENT_FILE).write_text(json.dumps(agreement, indent=2))
    write_model_card(model, staging, repo_id, base_model, layout)


def check_layout(model: AsymmetricDualEncoder, layout: str, query_encoder: str | Path | None) -> None:
    """A `ValueError` for an unknown layout, or a `query_encoder` folder that is not this student's export."""
    if layout not in LAYOUTS:
        raise ValueError(f"Unknown layout {layout!r}; choose one of {LAYOUTS}.")
    if query_encoder is None:
        return
    if layout != "query_encoder":
        raise ValueError("--query_encoder publishes an exported query encoder alone: pass --layout query_encoder.")
    record = Path(query_encoder) / ENCODER_FILE
    if not record.is_file():
        raise ValueError(
            f"--query_encoder {str(query_encoder)!r} is not a recipes/export.py folder (no {ENCODER_FILE})."
        )
    exported = json.loads(record.read_text())
    if (exported["side"], exported["teacher"], exported["layers"]) != (
        "student",
        model.config.teacher_name_or_path,
        list(model.config.student_layers),
    ):
        raise ValueError(
            f"--query_encoder {str(query_encoder)!r} was exported from another model (the {exported['side']} side, "
            f"layers {exported['layers']} of {exported['teacher']}), not this student."
        )


@contextmanager
def push_errors(repo_id: str):
    """What still fails after huggingface_hub's retries (5xx, dropped connections) becomes a `PushError` saying what
    to do; the message is the same for `recipes/push.py` and the Trainer's `--push_to_hub`."""
    try:
        yield
    except HfHubHTTPError as error:
        status = getattr(error.response, "status_code", None)
        if status in (401, 403):
            raise PushError(f"The Hub refused pushing to {repo_id!r} (HTTP {status}): {LOGIN_HELP}.") from None
        first = str(error).strip().splitlines()[0]
        raise PushError(f"Pushing to {repo_id!r} failed after retries (HTTP {status}): {first}.") from None
    except Exception as error:
        # connection errors that outlived huggingface_hub's retries: OSError or its HTTP client's TransportError
        if isinstance(error, OSError) or any(cls.__name__ == "TransportError" for cls in type(error).__mro__):
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise PushError(f"Pushing to {repo_id!r} failed: the Hub cannot be reached ({first}).") from None
        raise


def _token(repo_id: str, token: str | None) -> str:
    token = token or get_token()
    if token is None:
        raise PushError(f"No Hugging Face token found for pushing to {repo_id!r}: {LOGIN_HELP}.")
    return token


def check_push_access(repo_id: str, token: str | None = None) -> None:
    """Before a run that ends with a push: a token exists and the Hub accepts it (a `PushError` otherwise)."""
    with push_errors(repo_id):
        HfApi(token=_token(repo_id, token)).whoami()


def push_folder(
    folder: str | Path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str = "Upload hfdistill student",
) -> str:
    """Create the repo (and branch) if needed and upload the folder in one commit; returns the commit URL."""
    api = HfApi(token=_token(repo_id, token))
    with push_errors(repo_id):
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            revision=revision,
            allow_patterns=UPLOAD_PATTERNS if (Path(folder) / "router_config.json").is_file() else None,
            commit_message=commit_message,
        )
    return commit.commit_url


def push_to_hub(
    model_dir: str | Path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    check=None,
    cache_dir: str = DEFAULT_CACHE_DIR,
    base_model: str | None = None,
    layout: str = "router",
    query_encoder: str | Path | None = None,
    dry_run: str | Path | None = None,
    **push_kwargs,
) -> str:
    """Publish the student saved in `model_dir` in one commit, as `layout` (see `stage_for_hub`): the student is
    loaded and checked first (a damaged folder is never pushed); with `check` (`PublishCheckArguments`) its agreement
    with the teacher on the publisher's data goes into the card, and a push below the threshold set there is refused
    (a `ValueError`). With `dry_run` (a new folder) the repo is staged there and nothing is uploaded; returns the
    commit URL, or that folder."""
    from .agreement import check_before_publishing
    from .teacher import load_student

    if (Path(model_dir) / ENCODER_FILE).is_file():
        raise ValueError(
            f"{str(model_dir)!r} is an exported query encoder: publish it with its student, --model <the student's "
            f"folder> --layout query_encoder --query_encoder {model_dir}."
        )
    if dry_run is not None and Path(dry_run).exists() and any(Path(dry_run).iterdir()):
        raise ValueError(f"--dry_run {str(dry_run)!r} is not empty; give a new folder to stage the repo in.")
    model = load_student(str(model_dir))
    check_layout(model, layout, query_encoder)
    teacher = teacher_base_model(model_dir, model.config, base_model)
    if not is_hub_id(teacher):
        raise ValueError(
            f"The teacher of {str(model_dir)!r} was loaded from {teacher!r}, a local path, which the "
            "card cannot name as its base model: pass --base_model <the teacher's Hub id>."
        )
    report = check_before_publishing(model, check, cache_dir) if check is not None else None
    if dry_run is not None:
        stage_for_hub(model, model_dir, Path(dry_run), repo_id, report, base_model, layout, query_encoder)
        return str(dry_run)
    with tempfile.TemporaryDirectory() as staging:
        stage_for_hub(model, model_dir, Path(staging), repo_id, report, base_model, layout, query_encoder)
        return push_folder(staging, repo_id, private=private, revision=revision, **push_kwargs)
