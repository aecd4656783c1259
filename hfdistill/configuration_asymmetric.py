"""Configuration of an asymmetric dual encoder: a frozen teacher for documents, a few of its layers for queries.

This file imports only transformers and the standard library so that `register_for_auto_class` can copy it into a
saved model repository for `trust_remote_code` loading.
"""

import copy
import json

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.utils import cached_file

POOLING_MODES = ("mean", "cls", "max")
SIMILARITIES = ("cosine", "dot")
LAYER_STRATEGIES = ("top_bottom", "first", "last", "uniform")


def select_layers(strategy: str, num_student_layers: int, num_teacher_layers: int) -> list[int]:
    """Teacher layer indices (0-based) kept by a named strategy.

    `top_bottom` keeps the top and bottom layers (the paper's best: [0, 11] of 12, [11] for one layer),
    `first`/`last` a contiguous block, `uniform` every (n/k)-th layer ending at the top ([5, 11] of 12).
    """
    if strategy not in LAYER_STRATEGIES:
        raise ValueError(f"Unknown layer strategy {strategy!r}; choose one of {LAYER_STRATEGIES} or give indices.")
    if not 1 <= num_student_layers <= num_teacher_layers:
        raise ValueError(
            f"num_student_layers={num_student_layers} must be between 1 and the teacher's {num_teacher_layers} layers."
        )
    k, n = num_student_layers, num_teacher_layers
    if strategy == "first":
        return list(range(k))
    if strategy == "last":
        return list(range(n - k, n))
    if strategy == "uniform":
        return [(i + 1) * n // k - 1 for i in range(k)]
    bottom = k // 2
    return list(range(bottom)) + list(range(n - (k - bottom), n))


def validate_layers(layers: list[int], num_teacher_layers: int) -> list[int]:
    """Check explicit layer indices against the teacher's depth; returns them in teacher order."""
    if not layers:
        raise ValueError("student_layers is empty: keep at least one teacher layer, e.g. [0, 5].")
    if any(not isinstance(i, int) or isinstance(i, bool) for i in layers):
        raise ValueError(f"student_layers must be integers, got {layers!r}.")
    if len(set(layers)) != len(layers):
        raise ValueError(f"student_layers {layers} repeats a layer; each teacher layer can be kept once.")
    bad = [i for i in layers if not 0 <= i < num_teacher_layers]
    if bad:
        raise ValueError(
            f"student_layers {bad} out of range: the teacher has {num_teacher_layers} layers (indices 0.."
            f"{num_teacher_layers - 1})."
        )
    return sorted(layers)


def _read_json(repo: str, filename: str, revision: str | None, **hub_kwargs) -> dict | list | None:
    path = cached_file(
        repo,
        filename,
        revision=revision,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
        **hub_kwargs,
    )
    if path is None:
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_sentence_transformers_head(teacher: str, revision: str | None = None, **hub_kwargs) -> dict | None:
    """Pooling, normalization, similarity and max length from a teacher's sentence-transformers files.

    Returns None when the teacher has no sentence-transformers pooling config (then `pooling` must be given).
    """
    modules = _read_json(teacher, "modules.json", revision, **hub_kwargs)
    if not modules:
        return None
    pooling_module = next((m for m in modules if m["type"].endswith("Pooling")), None)
    if pooling_module is None:
        return None
    pooling_config = _read_json(teacher, f"{pooling_module['path']}/config.json", revision, **hub_kwargs) or {}
    if "pooling_mode" in pooling_config:
        pooling = {"lasttoken": "last"}.get(pooling_config["pooling_mode"], pooling_config["pooling_mode"])
    else:
        flags = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens", "max": "pooling_mode_max_tokens"}
        pooling = next((mode for mode, key in flags.items() if pooling_config.get(key)), None)
    if pooling not in POOLING_MODES:
        raise ValueError(f"Teacher {teacher!r} uses pooling {pooling!r}; hfdistill supports {POOLING_MODES}.")
    normalize = any(m["type"].endswith("Normalize") for m in modules)
    st_config = _read_json(teacher, "config_sentence_transformers.json", revision, **hub_kwargs) or {}
    bert_config = _read_json(teacher, "sentence_bert_config.json", revision, **hub_kwargs) or {}
    similarity = {"cos_sim": "cosine", "dot_score": "dot"}.get(
        st_config.get("similarity_fn_name"), st_config.get("similarity_fn_name")
    )
    if similarity not in SIMILARITIES:
        similarity = "cosine" if normalize else "dot"
    return {
        "pooling": pooling,
        "normalize": normalize,
        "similarity": similarity,
        "max_length": bert_config.get("max_seq_length"),
    }


class AsymmetricDualEncoderConfig(PreTrainedConfig):
    r"""
    Args:
        teacher_config (`PreTrainedConfig` or `dict`):
            Architecture of the teacher (the frozen document encoder); the student shares it with fewer layers.
        teacher_name_or_path (`str`):
            Hub id or path of the teacher the weights came from.
        teacher_revision (`str`, *optional*):
            Commit of the teacher on the Hub; part of every cache key so a changed teacher is never mixed up.
        student_layers (`list[int]`):
            0-based teacher layer indices kept, in teacher order, as the query encoder.
        pooling (`str`): `mean`, `cls` or `max`, as the teacher's sentence-transformers pooling.
        normalize (`bool`): L2-normalize embeddings, as the teacher does.
        similarity (`str`): `cosine` or `dot`, the teacher's retrieval score.
        projection_dim (`int`, *optional*):
            Adds a trainable linear map (identity-initialised) on the student's pooled output. Must equal the
            teacher's embedding size, since student embeddings are searched against the teacher's index.
        max_length (`int`): token limit of queries and documents.
    """

    model_type = "hfdistill-asymmetric"
    sub_configs_defaults = {"teacher_config": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    teacher_config: PreTrainedConfig | dict | None = None
    teacher_name_or_path: str | None = None
    teacher_revision: str | None = None
    student_layers: list[int] | None = None
    pooling: str = "mean"
    normalize: bool = True
    similarity: str = "cosine"
    projection_dim: int | None = None
    max_length: int = 512

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        num_layers = self.teacher_config.num_hidden_layers
        self.student_layers = validate_layers(list(self.student_layers or []), num_layers)
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"pooling={self.pooling!r} is not supported; choose one of {POOLING_MODES}.")
        if self.similarity not in SIMILARITIES:
            raise ValueError(f"similarity={self.similarity!r} is not supported; choose one of {SIMILARITIES}.")
        hidden = self.teacher_config.hidden_size
        if self.projection_dim is not None and self.projection_dim != hidden:
            raise ValueError(
                f"projection_dim={self.projection_dim} does not match the teacher's embedding size {hidden}: "
                "student queries are scored against the teacher's document index, so they must have the same size."
            )

    def student_config(self) -> PreTrainedConfig:
        """The teacher's architecture with only `len(student_layers)` layers."""
        config = copy.deepcopy(self.teacher_config)
        config.num_hidden_layers = len(self.student_layers)
        return config

    def hint_targets(self) -> list[int]:
        """For each student layer, the teacher hidden state (index into `hidden_states`, 0 = embeddings) its output
        stands in for: the input of the next kept teacher layer, and the teacher's last state for the top layer.

        For layers [0, 11] of 12: student layer 0 should hand layer 11 what teacher layer 10 does (state 11), and
        student layer 1 should end where the teacher ends (state 12).
        """
        return [*self.student_layers[1:], self.teacher_config.num_hidden_layers]

    @classmethod
    def from_teacher(
        cls,
        teacher: str,
        student_layers: list[int] | str = "top_bottom",
        num_student_layers: int = 2,
        revision: str | None = None,
        pooling: str | None = None,
        normalize: bool | None = None,
        similarity: str | None = None,
        projection_dim: int | None = None,
        max_length: int | None = None,
        **hub_kwargs,
    ) -> "AsymmetricDualEncoderConfig":
        """Read the teacher's architecture and sentence-transformers head; explicit arguments override the head."""
        teacher_config = AutoConfig.from_pretrained(teacher, revision=revision, **hub_kwargs)
        if getattr(teacher_config, "is_encoder_decoder", False) or getattr(teacher_config, "is_decoder", False):
            raise ValueError(f"Teacher {teacher!r} ({teacher_config.model_type}) is not an encoder-only model.")
        head = read_sentence_transformers_head(teacher, revision, **hub_kwargs)
        if head is None and pooling is None:
            raise ValueError(
                f"Teacher {teacher!r} has no sentence-transformers pooling config (modules.json); pass pooling="
                f"one of {POOLING_MODES} (and normalize/similarity) explicitly."
            )
        head = head or {"pooling": pooling, "normalize": False, "similarity": "dot", "max_length": None}
        num_layers = getattr(teacher_config, "num_hidden_layers", None)
        if num_layers is None:
            raise ValueError(f"Teacher {teacher!r} config has no num_hidden_layers: not a layered encoder.")
        if isinstance(student_layers, str):
            student_layers = select_layers(student_layers, num_student_layers, num_layers)
        resolved = cached_file(teacher, "config.json", revision=revision, **hub_kwargs)
        return cls(
            teacher_config=teacher_config.to_dict(),
            teacher_name_or_path=teacher,
            teacher_revision=revision or _commit_of(resolved),
            student_layers=list(student_layers),
            pooling=pooling or head["pooling"],
            normalize=head["normalize"] if normalize is None else normalize,
            similarity=similarity or head["similarity"],
            projection_dim=projection_dim,
            max_length=max_length or head["max_length"] or 512,
        )


def _commit_of(resolved_file: str | None) -> str | None:
    """The Hub commit a cached file belongs to (`.../snapshots/<commit>/...`), None for local folders."""
    parts = (resolved_file or "").replace("\\", "/").split("/")
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else None
