"""Configuration of an asymmetric dual encoder: a frozen teacher for documents, a few of its layers for queries.

This file imports only transformers, sentence-transformers and the standard library so that `register_for_auto_class`
can copy it into a saved model repository for `trust_remote_code` loading.
"""

import copy
import json

from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.utils import cached_file, logging

logger = logging.get_logger(__name__)

POOLING_MODES = Pooling.POOLING_MODES
HEAD_MODULES = {"Transformer": None, "Pooling": Pooling, "Dense": Dense, "Normalize": Normalize}
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


def validate_layers(layers: list[int], num_teacher_layers: int) -> list[int]:
    """Check explicit layer indices against the teacher's depth; returns them in teacher order. `[]` keeps none: a
    0-layer student (the teacher's token embeddings, pooling and head)."""
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


def layer_settings(teacher_config: PreTrainedConfig, layers: list[int]) -> dict:
    """The config values that describe a stack of the teacher's `layers`: their number and per-layer settings."""
    settings = {"num_hidden_layers": len(layers)}
    for key in PER_LAYER_KEYS:
        values = getattr(teacher_config, key, None)
        if isinstance(values, (list, tuple)):
            settings[key] = [values[i] for i in layers]
    return settings


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


def module_hub_kwargs(path: str, revision: str | None, hub_kwargs: dict) -> dict:
    """transformers-style hub options (`token`, `cache_dir`, ...) as sentence-transformers' module loaders name them,
    for the module saved in the teacher's folder `path`."""
    return {
        "subfolder": path,
        "revision": revision,
        "token": hub_kwargs.get("token"),
        "cache_folder": hub_kwargs.get("cache_dir"),
        "local_files_only": hub_kwargs.get("local_files_only", False),
    }


def _module_config(module_class, teacher: str, path: str, revision: str | None, **hub_kwargs) -> dict:
    """A sentence-transformers module's config, read by the module class itself (legacy keys converted)."""
    return module_class.load_config(model_name_or_path=teacher, **module_hub_kwargs(path, revision, hub_kwargs))


def read_sentence_transformers_teacher(teacher: str, revision: str | None = None, **hub_kwargs) -> dict | None:
    """The head, prompts, similarity and max length of a sentence-transformers teacher, read from its files.

    The head lists the modules after the `Transformer` (`Pooling`, `Dense`, `Normalize`), each as
    `{"type", "path", "config"}` with the config its own sentence-transformers class reads. A module hfdistill cannot
    reproduce is an error that names it. Returns None when the teacher has no `modules.json`.
    """
    modules = _read_json(teacher, "modules.json", revision, **hub_kwargs)
    if not modules:
        return None
    kinds = [entry["type"].rsplit(".", 1)[-1] for entry in modules]
    unsupported = [
        f"{kind} ({entry['path'] or 'root'})" for kind, entry in zip(kinds, modules) if kind not in HEAD_MODULES
    ]
    if kinds[0] != "Transformer" or "Transformer" in kinds[1:] or unsupported:
        raise ValueError(
            f"Teacher {teacher!r} is built from sentence-transformers modules {kinds}; hfdistill reproduces a "
            f"Transformer followed by {sorted(set(HEAD_MODULES) - {'Transformer'})} only"
            + (f", not {unsupported}." if unsupported else ".")
        )
    head = []
    for kind, entry in zip(kinds[1:], modules[1:]):
        config = _module_config(HEAD_MODULES[kind], teacher, entry["path"], revision, **hub_kwargs)
        if kind == "Pooling" and not config.get("include_prompt", True):
            raise ValueError(
                f"Teacher {teacher!r} pools without its prompt tokens (Pooling include_prompt=false), which hfdistill "
                "does not reproduce."
            )
        if kind == "Dense" and not str(config.get("activation_function", "torch.")).startswith("torch."):
            raise ValueError(
                f"Teacher {teacher!r} has a Dense module ({entry['path']}) with the custom activation "
                f"{config['activation_function']!r}; hfdistill reproduces torch activations only."
            )
        head.append({"type": kind, "path": entry["path"], "config": config})
    if not any(module["type"] == "Pooling" for module in head):
        raise ValueError(f"Teacher {teacher!r} has no sentence-transformers Pooling module in modules.json.")
    st_config = _read_json(teacher, "config_sentence_transformers.json", revision, **hub_kwargs) or {}
    bert_config = _read_json(teacher, "sentence_bert_config.json", revision, **hub_kwargs) or {}
    if bert_config.get("do_lower_case"):
        raise ValueError(f"Teacher {teacher!r} lowercases its inputs (do_lower_case), which hfdistill does not do.")
    similarity = {"cos_sim": "cosine", "dot_score": "dot"}.get(
        st_config.get("similarity_fn_name"), st_config.get("similarity_fn_name")
    )
    if similarity not in SIMILARITIES:
        similarity = "cosine" if head[-1]["type"] == "Normalize" else "dot"
    return {
        "head": head,
        "prompts": {name: text for name, text in (st_config.get("prompts") or {}).items() if text is not None},
        "similarity": similarity,
        "max_length": bert_config.get("max_seq_length"),
    }


def resolve_prompt(prompts: dict[str, str], side: str, name: str | None = None, text: str | None = None) -> str:
    """The prompt the teacher applies to `side` ("query" or "document"), as sentence-transformers resolves it.

    `SentenceTransformer.encode_query` / `encode_document` use the prompt named `query` / `document` (an empty one
    when the teacher has none), never `default_prompt_name`. An explicit `text` or `name` wins; a name the teacher
    lacks is an error.
    """
    if text is not None:
        return text
    if name is not None:
        if name not in prompts:
            raise ValueError(f"The teacher has no prompt named {name!r}; its prompts are {sorted(prompts)}.")
        return prompts[name]
    return prompts.get(side, "")


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
        head (`list[dict]`):
            The teacher's sentence-transformers modules after its transformer (`Pooling`, `Dense`, `Normalize`), each
            `{"type", "path", "config"}`; the student gets a trainable copy, the teacher keeps its own.
        similarity (`str`): `cosine` or `dot`, the teacher's retrieval score.
        projection_dim (`int`, *optional*):
            Adds a trainable linear map (identity-initialised) on the student's embeddings (normalized again if the
            head normalizes). Must equal the teacher's embedding size, since student embeddings are searched against
            the teacher's index.
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
    sub_configs_defaults = {"teacher_config": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    teacher_config: PreTrainedConfig | dict | None = None
    teacher_name_or_path: str | None = None
    teacher_revision: str | None = None
    student_layers: list[int] | None = None
    head: list[dict] | None = None
    similarity: str = "cosine"
    projection_dim: int | None = None
    max_length: int = 512
    query_prompt: str = ""
    document_prompt: str = ""
    student_query_prompt: str | None = None
    share_token_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        num_layers = self.teacher_config.num_hidden_layers
        self.student_layers = validate_layers(list(self.student_layers or []), num_layers)
        self.head = self.head or default_head("mean", self.teacher_config.hidden_size, True)
        unknown = [module["type"] for module in self.head if module["type"] not in HEAD_MODULES]
        if unknown or self.head[0]["type"] != "Pooling":
            raise ValueError(f"head must start with a Pooling module and hold {sorted(HEAD_MODULES)} only, got "
                             f"{[module['type'] for module in self.head]}.")  # fmt: skip
        modes = self.pooling_mode if isinstance(self.pooling_mode, (list, tuple)) else [self.pooling_mode]
        bad = [mode for mode in modes if mode not in POOLING_MODES]
        if bad:
            raise ValueError(f"pooling={bad[0]!r} is not supported; choose one of {POOLING_MODES}.")
        if self.similarity not in SIMILARITIES:
            raise ValueError(f"similarity={self.similarity!r} is not supported; choose one of {SIMILARITIES}.")
        embedding_dim = self.embedding_dim  # checks that each Dense module takes what the modules before it give
        if self.projection_dim is not None and self.projection_dim != embedding_dim:
            raise ValueError(
                f"projection_dim={self.projection_dim} does not match the teacher's embedding size "
                f"{embedding_dim}: student queries are scored against the teacher's document index, so they "
                "must have the same size."
            )

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
        size = self.teacher_config.hidden_size
        for module in self.head:
            config = module["config"]
            if module["type"] == "Pooling":
                modes = config.get("pooling_mode", "mean")
                size *= len(modes) if isinstance(modes, (list, tuple)) else 1
            elif module["type"] == "Dense":
                if config["in_features"] != size:
                    raise ValueError(
                        f"The teacher's Dense module {module['path']!r} maps {config['in_features']} -> "
                        f"{config['out_features']} features, but the modules before it give {size}."
                    )
                size = config["out_features"]
        return size

    @property
    def student_prompt(self) -> str:
        """The prompt the student puts before queries."""
        return self.query_prompt if self.student_query_prompt is None else self.student_query_prompt

    def student_config(self) -> PreTrainedConfig:
        """The teacher's architecture with only the kept layers; per-layer settings (`layer_types`) follow them."""
        config = copy.deepcopy(self.teacher_config)
        for key, value in layer_settings(self.teacher_config, self.student_layers).items():
            setattr(config, key, value)
        return config

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
        query_prompt: str | None = None,
        document_prompt: str | None = None,
        query_prompt_name: str | None = None,
        document_prompt_name: str | None = None,
        student_query_prompt: str | None = None,
        share_token_embeddings: bool = False,
        trust_remote_code: bool = False,
        **hub_kwargs,
    ) -> "AsymmetricDualEncoderConfig":
        """Read the teacher's architecture, head and prompts as sentence-transformers does; explicit arguments win.

        `query_prompt` / `document_prompt` give prompt texts, `query_prompt_name` / `document_prompt_name` pick
        prompts of the teacher's `config_sentence_transformers.json` by name.
        """
        teacher_config = AutoConfig.from_pretrained(
            teacher, revision=revision, trust_remote_code=trust_remote_code, **hub_kwargs
        )
        if getattr(teacher_config, "is_encoder_decoder", False):
            raise ValueError(f"Teacher {teacher!r} ({teacher_config.model_type}) is an encoder-decoder model.")
        num_layers = getattr(teacher_config, "num_hidden_layers", None)
        if num_layers is None:
            raise ValueError(f"Teacher {teacher!r} config has no num_hidden_layers: not a layered encoder.")
        st_teacher = read_sentence_transformers_teacher(teacher, revision, **hub_kwargs)
        if st_teacher is None:
            if pooling is None:
                raise ValueError(
                    f"Teacher {teacher!r} has no sentence-transformers pooling config (modules.json); pass pooling="
                    f"one of {POOLING_MODES} (and normalize/similarity) explicitly."
                )
            st_teacher = {"head": [], "prompts": {}, "similarity": "dot", "max_length": None}
        head = st_teacher["head"] or default_head(pooling, teacher_config.hidden_size, bool(normalize))
        if pooling is not None:
            head[0]["config"]["pooling_mode"] = pooling
        if normalize is not None and normalize != (head[-1]["type"] == "Normalize"):
            head = head + [{"type": "Normalize", "path": "", "config": {}}] if normalize else head[:-1]
        if isinstance(student_layers, str):
            student_layers = select_layers(student_layers, num_student_layers, num_layers)
        prompts = st_teacher["prompts"]
        unused = [name for name in ("passage", "corpus") if prompts.get(name) and not prompts.get("document")]
        if unused and document_prompt is None and document_prompt_name is None:
            logger.warning(
                "Teacher %r names a %r prompt but no (or an empty) 'document' one: sentence-transformers' "
                "encode_document, and so hfdistill, put no prompt before documents. If its index was built with it, "
                "pass document_prompt_name=%r.",
                teacher, unused[0], unused[0],
            )  # fmt: skip
        resolved = cached_file(teacher, "config.json", revision=revision, **hub_kwargs)
        return cls(
            teacher_config=teacher_config.to_dict(),
            teacher_name_or_path=teacher,
            teacher_revision=revision or _commit_of(resolved),
            student_layers=list(student_layers),
            head=head,
            similarity=similarity or st_teacher["similarity"],
            projection_dim=projection_dim,
            max_length=max_length or st_teacher["max_length"] or 512,
            query_prompt=resolve_prompt(prompts, "query", query_prompt_name, query_prompt),
            document_prompt=resolve_prompt(prompts, "document", document_prompt_name, document_prompt),
            student_query_prompt=student_query_prompt,
            share_token_embeddings=share_token_embeddings,
        )


def _commit_of(resolved_file: str | None) -> str | None:
    """The Hub commit a cached file belongs to (`.../snapshots/<commit>/...`), None for local folders."""
    parts = (resolved_file or "").replace("\\", "/").split("/")
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else None
