"""Configuration of an asymmetric dual encoder: a frozen teacher for documents, a few of its layers for queries.

This file imports only transformers, sentence-transformers and the standard library so that `register_for_auto_class`
can copy it into a saved model repository for `trust_remote_code` loading.
"""

import copy
from collections.abc import Callable
from dataclasses import dataclass

from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling
from sentence_transformers.util import import_from_string
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.utils import logging

logger = logging.get_logger(__name__)

POOLING_MODES = Pooling.POOLING_MODES
PER_LAYER_KEYS = ("layer_types",)  # config lists with one entry per layer: the student keeps those of its layers
SIMILARITIES = ("cosine", "dot")
LAYER_STRATEGIES = ("top_bottom", "first", "last", "uniform")


def select_layers(strategy: str, num_student_layers: int, num_teacher_layers: int) -> list[int]:
    """Teacher layer indices (0-based) kept by a named strategy.

    `top_bottom` keeps the top and bottom layers (the paper's best: [0, 11] of 12, [11] for one layer),
    `first`/`last` a contiguous block, `uniform` every (n/k)-th layer ending at the top ([5, 11] of 12). With 0
    layers every strategy keeps none: the student is the teacher's token embeddings and head.
    """
    if strategy not in LAYER_STRATEGIES:
        raise ValueError(f"Unknown layer strategy {strategy!r}; choose one of {LAYER_STRATEGIES} or give indices.")
    if not 0 <= num_student_layers <= num_teacher_layers:
        raise ValueError(
            f"num_student_layers={num_student_layers} must be between 0 and the teacher's {num_teacher_layers} layers."
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


def validate_layers(layers: list[int], num_teacher_layers: int, owner: str = "the teacher") -> list[int]:
    """Check explicit layer indices against the teacher's depth; returns them in teacher order. `[]` keeps none: a
    0-layer student (the teacher's token embeddings, pooling and head)."""
    if any(not isinstance(i, int) or isinstance(i, bool) for i in layers):
        raise ValueError(f"student_layers must be integers, got {layers!r}.")
    if len(set(layers)) != len(layers):
        raise ValueError(f"student_layers {layers} repeats a layer; each teacher layer can be kept once.")
    bad = [i for i in layers if not 0 <= i < num_teacher_layers]
    if bad:
        raise ValueError(
            f"student_layers {bad} out of range: {owner} has {num_teacher_layers} layers (indices 0.."
            f"{num_teacher_layers - 1})."
        )
    return sorted(layers)


def layer_settings(teacher_config: PreTrainedConfig, layers: list[int]) -> dict:
    """The config values that describe a stack of the teacher's `layers`: their number and per-layer settings."""
    settings = {"num_hidden_layers": len(layers)}
    for key in PER_LAYER_KEYS:
        values = getattr(teacher_config, key, None)
        if isinstance(values, (list, tuple)):
            settings[key] = [values[i] for i in layers]
    return settings


def default_head(pooling: str, embedding_dimension: int, normalize: bool) -> list[dict]:
    """A Pooling (+ Normalize) head, for teachers without sentence-transformers files."""
    head = [
        {
            "type": "Pooling",
            "path": "",
            "config": {"embedding_dimension": embedding_dimension, "pooling_mode": pooling},
        }
    ]
    return head + [{"type": "Normalize", "path": "", "config": {}}] if normalize else head


DEFAULT_ACTIVATION = "torch.nn.modules.activation.Tanh"  # sentence-transformers' Dense default


@dataclass(frozen=True)
class HeadModule:
    """How hfdistill reproduces one sentence-transformers module of a teacher's head, after its `Transformer`.

    Args:
        module_class (`type`):
            The sentence-transformers class, which reads the module's config from the teacher's files.
        build (`Callable[[dict], nn.Module]`):
            The module, from its config.
        output_size (`Callable[[dict, int], int]`):
            The size of what it gives from inputs of the given size; an error when it cannot take them.
        describe (`Callable[[dict], str]`):
            The module in words, for the model card.
    """

    module_class: type
    build: Callable
    output_size: Callable
    describe: Callable


def pooling_modes(config: dict) -> list[str]:
    modes = config.get("pooling_mode", "mean")
    return list(modes) if isinstance(modes, (list, tuple)) else [modes]


def _dense_size(config: dict, size: int) -> int:
    if config["in_features"] != size:
        mapping = f"{config['in_features']} -> {config['out_features']}"
        raise ValueError(f"maps {mapping} features, but the modules before it give {size}.")
    return config["out_features"]


def _dense(config: dict) -> Dense:
    config = dict(config)
    activation = import_from_string(config.pop("activation_function", DEFAULT_ACTIVATION))
    return Dense(**config, activation_function=activation())


HEAD_MODULES = {  # one entry per module type: what builds, sizes, checks and describes it
    "Pooling": HeadModule(
        Pooling,
        build=lambda config: Pooling(**config),
        output_size=lambda config, size: size * len(pooling_modes(config)),
        describe=lambda config: f"{' + '.join(pooling_modes(config))} pooling",
    ),
    "Dense": HeadModule(
        Dense,
        build=_dense,
        output_size=_dense_size,
        describe=lambda config: (
            f"Dense {config['in_features']} -> {config['out_features']} "
            f"({config.get('activation_function', DEFAULT_ACTIVATION).rsplit('.', 1)[-1]})"
        ),
    ),
    "Normalize": HeadModule(
        Normalize,
        build=lambda config: Normalize(),
        output_size=lambda config, size: size,
        describe=lambda config: "L2 normalization",
    ),
}


def output_size(head: list[dict], hidden_size: int) -> int:
    """Size of the embeddings a head gives from token states of `hidden_size`; an error naming a module that does
    not take what the modules before it give."""
    size = hidden_size
    for module in head:
        try:
            size = HEAD_MODULES[module["type"]].output_size(module["config"], size)
        except ValueError as error:
            raise ValueError(f"The {module['type']} module {module['path']!r} {error}") from None
    return size


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
            0-based layer indices kept, in order, as the query encoder: the teacher's, or those of `student_config`.
        head (`list[dict]`):
            The teacher's sentence-transformers modules after its transformer (`Pooling`, `Dense`, `Normalize`), each
            `{"type", "path", "config"}`; the student gets a trainable copy, the teacher keeps its own.
        student_dropout (`float`, *optional*, defaults to `0.0`):
            Dropout probability of every dropout in the student (hidden, attention, embeddings), applied when it is
            built: the student regresses the teacher's exact outputs, and dropout only adds noise to that target.
            `None` keeps its architecture's own.
        student_config (`PreTrainedConfig` or `dict`, *optional*):
            Architecture of a student that is another, smaller encoder (with its own tokenizer) rather than a few of
            the teacher's layers; `None` for a student of the teacher's own layers.
        student_name_or_path (`str`, *optional*):
            Hub id or path of that smaller encoder, where its initial weights and tokenizer came from.
        student_head (`list[dict]`, *optional*):
            That student's head, in `head`'s form: its own pooling, a `Dense` map to the teacher's embedding size
            when the two differ, and the teacher's normalization; `None` for a copy of `head`.
        teacher_weights_fingerprint (`str`, *optional*):
            A fingerprint of the teacher's weights as the student was distilled against them (`document_encoder` and
            `document_head`); a saved student whose document weights no longer match it is refused when loaded: the
            index built with the teacher would no longer be the one its queries were aligned to.
        similarity (`str`): `cosine` or `dot`, the teacher's retrieval score.
        max_length (`int`): token limit of queries and documents.
        query_prompt (`str`, *optional*, defaults to `""`):
            Prompt the teacher puts before queries; the teacher's training targets are computed with it.
        document_prompt (`str`, *optional*, defaults to `""`): Prompt the teacher puts before documents.
        student_query_prompt (`str`, *optional*):
            Prompt the student puts before queries; defaults to `query_prompt`. `""` makes a prompt-free student that
            learns to map raw queries to the teacher's prompted embeddings.
        share_token_embeddings (`bool`, *optional*, defaults to `False`):
            The student uses the teacher's token embeddings themselves, frozen, instead of a trainable copy: a
            saved student stores them once. Worth it where the vocabulary is most of the model (XLM-R's 250K tokens
            are 96M of multilingual-e5-small's 118M parameters). sentence-transformers stores each route's weights
            apart, so such a student is saved for transformers only.
    """

    model_type = "hfdistill-asymmetric"
    sub_configs_defaults = {
        "teacher_config": SubConfigSpec(config_class=AutoConfig, model_type="bert"),
        "student_config": SubConfigSpec(config_class=AutoConfig, model_type="bert", optional=True),
    }

    teacher_config: PreTrainedConfig | dict | None = None
    teacher_name_or_path: str | None = None
    teacher_revision: str | None = None
    student_layers: list[int] | None = None
    head: list[dict] | None = None
    similarity: str = "cosine"
    max_length: int = 512
    query_prompt: str = ""
    document_prompt: str = ""
    student_query_prompt: str | None = None
    share_token_embeddings: bool = False
    student_dropout: float | None = 0.0
    student_config: PreTrainedConfig | dict | None = None
    student_name_or_path: str | None = None
    student_head: list[dict] | None = None
    teacher_weights_fingerprint: str | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        num_layers = self.student_architecture.num_hidden_layers
        owner = "the teacher" if self.student_config is None else "the student model"
        self.student_layers = validate_layers(list(self.student_layers or []), num_layers, owner)
        self.head = self.head or default_head("mean", self.teacher_config.hidden_size, True)
        for head in (self.head, self.student_head or self.head):
            unknown = [module["type"] for module in head if module["type"] not in HEAD_MODULES]
            if unknown or head[0]["type"] != "Pooling":
                raise ValueError(
                    f"head must start with a Pooling module and hold {sorted(HEAD_MODULES)} only, got "
                    f"{[module['type'] for module in head]}."
                )
            bad = [mode for mode in pooling_modes(head[0]["config"]) if mode not in POOLING_MODES]
            if bad:
                raise ValueError(f"pooling={bad[0]!r} is not supported; choose one of {POOLING_MODES}.")
        if self.similarity not in SIMILARITIES:
            raise ValueError(f"similarity={self.similarity!r} is not supported; choose one of {SIMILARITIES}.")
        student_dim = output_size(self.student_head or self.head, self.student_architecture.hidden_size)
        if student_dim != self.embedding_dim:
            raise ValueError(
                f"The student's head gives {student_dim}-d embeddings and the teacher's {self.embedding_dim}-d: "
                "student queries are searched in the teacher's index, so its head must end in the teacher's size."
            )
        if self.student_dropout is not None and not 0 <= self.student_dropout < 1:
            raise ValueError(f"student_dropout must be in [0, 1), got {self.student_dropout}.")
        if self.student_config is not None and self.share_token_embeddings:
            raise ValueError("share_token_embeddings needs a student of the teacher's own layers (one vocabulary).")

    @property
    def student_architecture(self) -> PreTrainedConfig:
        """The architecture the student keeps `student_layers` of: `student_config`, else the teacher's."""
        return self.student_config if self.student_config is not None else self.teacher_config

    def student_build_config(self) -> PreTrainedConfig:
        """A copy of the student's architecture to build it from: every dropout probability set to `student_dropout`
        (its per-layer settings follow the kept layers when they are built)."""
        config = copy.deepcopy(self.student_architecture)
        if self.student_dropout is not None:
            for key, value in vars(config).items():
                if key.endswith(("dropout", "dropout_prob")) and isinstance(value, float):
                    setattr(config, key, self.student_dropout)
        return config

    @property
    def pooling_mode(self) -> str | list[str]:
        """The teacher's pooling (`mean`, `cls`, `max`, `lasttoken`, `weightedmean`, `mean_sqrt_len_tokens`)."""
        return self.head[0]["config"].get("pooling_mode", "mean")

    @property
    def normalize(self) -> bool:
        """Whether embeddings end L2-normalized, as the teacher's `Normalize` module makes them."""
        return self.head[-1]["type"] == "Normalize"

    @property
    def embedding_dim(self) -> int:
        """Size of the embeddings (the teacher's, after pooling and any Dense layers)."""
        return output_size(self.head, self.teacher_config.hidden_size)

    @property
    def student_prompt(self) -> str:
        """The prompt the student puts before queries."""
        return self.query_prompt if self.student_query_prompt is None else self.student_query_prompt
