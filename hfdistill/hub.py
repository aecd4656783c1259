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

from .agreement import AGREEMENT_FILE
from .model_card import EXPORTED_EVAL_RESULTS, teacher_base_model, write_model_card
from .modeling_asymmetric import AsymmetricDualEncoder
from .provenance import is_hub_id

logger = logging.getLogger(__name__)

UPLOAD_PATTERNS = [
    "*.safetensors", "config.json", "*.py", "README.md", "tokenizer*", "vocab.txt", "merges.txt",
    "special_tokens_map.json", "sentencepiece.bpe.model", "eval_results.json", "speed_results.json",
    "distillation.json", "modules.json", "router_config.json", "config_sentence_transformers.json",
    "query_*/*", "document_*/*", EXPORTED_EVAL_RESULTS.format("*"), AGREEMENT_FILE, "student_tokenizer/*",
]  # fmt: skip
LOGIN_HELP = "log in with `hf auth login` (or set HF_TOKEN) using a token with write access"


class PushError(RuntimeError):
    """A push that cannot succeed as asked; the message says how to fix it."""


def stage_for_hub(
    model: AsymmetricDualEncoder,
    model_dir: str | Path,
    staging: Path,
    repo_id: str,
    agreement: list[dict] | None = None,
    base_model: str | None = None,
) -> None:
    """Copy what a Hub repo needs into `staging`: the saved student (its one layout serves transformers and
    sentence-transformers), its results, the agreement check made before this push, and a card; no checkpoints or
    training state."""
    shutil.copytree(
        model_dir, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns("checkpoint-*", "*.bin", "*.pt", "*.pth")
    )
    if agreement is not None:
        (staging / AGREEMENT_FILE).write_text(json.dumps(agreement, indent=2))
    write_model_card(model, staging, repo_id, base_model)


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
            allow_patterns=UPLOAD_PATTERNS,
            commit_message=commit_message,
        )
    return commit.commit_url


def push_to_hub(
    model_dir: str | Path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    check=None,
    cache_dir: str = "~/.cache/hfdistill/embeddings",
    base_model: str | None = None,
    **push_kwargs,
) -> str:
    """Publish the student saved in `model_dir`: weights, config, tokenizer, code, card, results in one commit. The
    student is loaded and checked first (a damaged folder is never pushed); with `check` (`PublishCheckArguments`)
    its agreement with the teacher on the publisher's data goes into the card, and a push below the threshold set
    there is refused (a `ValueError`)."""
    from .agreement import check_before_publishing
    from .persistence import load_student

    model = load_student(str(model_dir))
    teacher = teacher_base_model(model_dir, model.config, base_model)
    if not is_hub_id(teacher):
        raise ValueError(f"The teacher of {str(model_dir)!r} was loaded from {teacher!r}, a local path, which the "
                         "card cannot name as its base model: pass --base_model <the teacher's Hub id>.")  # fmt: skip
    report = check_before_publishing(model, check, cache_dir) if check is not None else None
    with tempfile.TemporaryDirectory() as staging:
        stage_for_hub(model, model_dir, Path(staging), repo_id, report, base_model)
        return push_folder(staging, repo_id, private=private, revision=revision, **push_kwargs)
