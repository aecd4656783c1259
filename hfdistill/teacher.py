"""Reading a teacher as sentence-transformers reads it, building a student from it (`from_teacher`), and loading a
saved student with one clear error for anything else (`load_student`).

Needed only to build a student: a saved student carries its teacher's architecture, head and prompts in its config,
so this module is not part of the code a saved model ships for `trust_remote_code` loading.
"""

import json
from pathlib import Path

import torch
from sentence_transformers.sentence_transformer.modules import Dense
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedConfig
from transformers.utils import cached_file, logging

from .configuration_asymmetric import (
    HEAD_MODULES,
    POOLING_MODES,
    SIMILARITIES,
    AsymmetricDualEncoderConfig,
    default_head,
    output_size,
    select_layers,
)
from .modeling_asymmetric import AsymmetricDualEncoder, layer_stack_path, student_state_dict

logger = logging.get_logger(__name__)
_TOKENIZER_KWARGS = ("revision", "cache_dir", "token", "local_files_only", "subfolder", "trust_remote_code")


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
        f"{kind} ({entry['path'] or 'root'})"
        for kind, entry in zip(kinds, modules)
        if kind not in HEAD_MODULES and kind != "Transformer"
    ]
    if kinds[0] != "Transformer" or "Transformer" in kinds[1:] or unsupported:
        raise ValueError(
            f"Teacher {teacher!r} is built from sentence-transformers modules {kinds}; hfdistill reproduces a "
            f"Transformer followed by {sorted(HEAD_MODULES)} only" + (f", not {unsupported}." if unsupported else ".")
        )
    head = []
    for kind, entry in zip(kinds[1:], modules[1:]):
        config = _module_config(HEAD_MODULES[kind].module_class, teacher, entry["path"], revision, **hub_kwargs)
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


def read_encoder(
    name: str,
    revision: str | None = None,
    pooling: str | None = None,
    normalize: bool | None = None,
    trust_remote_code: bool = False,
    role: str = "Teacher",
    fallback_pooling: str | None = None,
    **hub_kwargs,
) -> tuple[PreTrainedConfig, dict, list[dict]]:
    """(architecture, sentence-transformers settings, head) of an encoder on the Hub or on disk, read as
    sentence-transformers reads it; `pooling` / `normalize` override its head, `fallback_pooling` stands in for a
    model without sentence-transformers files."""
    config = AutoConfig.from_pretrained(name, revision=revision, trust_remote_code=trust_remote_code, **hub_kwargs)
    if getattr(config, "is_encoder_decoder", False):
        raise ValueError(f"{role} {name!r} ({config.model_type}) is an encoder-decoder model.")
    if getattr(config, "num_hidden_layers", None) is None:
        raise ValueError(f"{role} {name!r} config has no num_hidden_layers: not a layered encoder.")
    settings = read_sentence_transformers_teacher(name, revision, **hub_kwargs)
    pooling = pooling or (fallback_pooling if settings is None else None)
    if settings is None:
        if pooling is None:
            raise ValueError(
                f"{role} {name!r} has no sentence-transformers pooling config (modules.json); pass pooling="
                f"one of {POOLING_MODES} (and normalize/similarity) explicitly."
            )
        settings = {"head": [], "prompts": {}, "similarity": "dot", "max_length": None}
    head = settings["head"] or default_head(pooling, config.hidden_size, bool(normalize))
    if pooling is not None:
        head[0]["config"]["pooling_mode"] = pooling
    if normalize is not None and normalize != (head[-1]["type"] == "Normalize"):
        head = head + [{"type": "Normalize", "path": "", "config": {}}] if normalize else head[:-1]
    return config, settings, head


def student_model_head(head: list[dict], hidden_size: int, teacher_dim: int, normalize: bool) -> list[dict]:
    """A smaller encoder's head as a student of a teacher: its own pooling and Dense modules, a Dense map to the
    teacher's embedding size when the two differ (trained from scratch), and the teacher's normalization."""
    modules = [module for module in head if module["type"] != "Normalize"]
    size = output_size(modules, hidden_size)
    if size != teacher_dim:
        activation = "torch.nn.modules.linear.Identity"
        dense = {"in_features": size, "out_features": teacher_dim, "bias": True, "activation_function": activation}
        modules.append({"type": "Dense", "path": "", "config": dense})
    return modules + ([{"type": "Normalize", "path": "", "config": {}}] if normalize else [])


def config_from_teacher(
    teacher: str,
    student_layers: list[int] | str = "top_bottom",
    num_student_layers: int = 2,
    revision: str | None = None,
    pooling: str | None = None,
    normalize: bool | None = None,
    similarity: str | None = None,
    max_length: int | None = None,
    query_prompt: str | None = None,
    document_prompt: str | None = None,
    query_prompt_name: str | None = None,
    document_prompt_name: str | None = None,
    student_query_prompt: str | None = None,
    share_token_embeddings: bool = False,
    student_dropout: float | None = 0.0,
    student_model: str | None = None,
    student_revision: str | None = None,
    trust_remote_code: bool = False,
    **hub_kwargs,
) -> AsymmetricDualEncoderConfig:
    """Read the teacher's architecture, head and prompts as sentence-transformers does; explicit arguments win.

    `query_prompt` / `document_prompt` give prompt texts, `query_prompt_name` / `document_prompt_name` pick
    prompts of the teacher's `config_sentence_transformers.json` by name. With `student_model` (a smaller encoder on
    the Hub or on disk, with its own tokenizer) the student keeps `student_layers` of that model instead of the
    teacher's, reads queries with its own query prompt unless `student_query_prompt` is given, and ends in a Dense map
    to the teacher's embedding size when the two differ.
    """
    teacher_config, settings, head = read_encoder(
        teacher, revision, pooling, normalize, trust_remote_code, **hub_kwargs
    )
    prompts = settings["prompts"]
    unused = [name for name in ("passage", "corpus") if prompts.get(name) and not prompts.get("document")]
    if unused and document_prompt is None and document_prompt_name is None:
        logger.warning(
            "Teacher %r names a %r prompt but no (or an empty) 'document' one: sentence-transformers' "
            "encode_document, and so hfdistill, put no prompt before documents. If its index was built with it, "
            "pass document_prompt_name=%r.",
            teacher,
            unused[0],
            unused[0],
        )
    max_length = max_length or settings["max_length"] or 512
    student = {}
    if student_model is not None:
        architecture, own, own_head = read_encoder(
            student_model, student_revision, None, None, trust_remote_code, "Student model", "mean", **hub_kwargs
        )
        student = {
            "student_config": architecture.to_dict(),
            "student_name_or_path": student_model,
            "student_head": student_model_head(
                own_head,
                architecture.hidden_size,
                output_size(head, teacher_config.hidden_size),
                head[-1]["type"] == "Normalize",
            ),
        }
        student_query_prompt = (
            own["prompts"].get("query", "") if student_query_prompt is None else student_query_prompt
        )
        max_length = min(max_length, own["max_length"] or max_length)
    num_layers = (architecture if student_model is not None else teacher_config).num_hidden_layers
    if isinstance(student_layers, str):
        student_layers = select_layers(student_layers, num_student_layers, num_layers)
    resolved = cached_file(teacher, "config.json", revision=revision, **hub_kwargs)
    return AsymmetricDualEncoderConfig(
        teacher_config=teacher_config.to_dict(),
        teacher_name_or_path=teacher,
        teacher_revision=revision or _commit_of(resolved),
        student_layers=list(student_layers),
        head=head,
        similarity=similarity or settings["similarity"],
        max_length=max_length,
        query_prompt=resolve_prompt(prompts, "query", query_prompt_name, query_prompt),
        document_prompt=resolve_prompt(prompts, "document", document_prompt_name, document_prompt),
        student_query_prompt=student_query_prompt,
        share_token_embeddings=share_token_embeddings,
        student_dropout=student_dropout,
        **student,
    )


def from_teacher(
    teacher: str, student_layers: list[int] | str = "top_bottom", num_student_layers: int = 2, **kwargs
) -> AsymmetricDualEncoder:
    """A student of a Hub (or local) teacher: explicit layer indices, or a strategy name and a count.

    Other keyword arguments (`revision`, `pooling`, `normalize`, `similarity`, `max_length`, the prompts,
    `share_token_embeddings`, `student_model`, `trust_remote_code`, hub options) go to `config_from_teacher`, which
    checks them before any weights are loaded. With `student_model` the student is that smaller encoder's layers,
    its own tokenizer and head.
    """
    config = config_from_teacher(teacher, student_layers, num_student_layers, **kwargs)
    model = AsymmetricDualEncoder(config)  # an architecture without a known layer stack fails here, before downloads
    hub_kwargs = {k: kwargs[k] for k in _TOKENIZER_KWARGS if k in kwargs}
    teacher_state = _weights(model.document_encoder, teacher, {**hub_kwargs, "revision": config.teacher_revision})
    _load_heads(model.document_head, config.head, teacher, config.teacher_revision, hub_kwargs)
    model.document_encoder.load_state_dict(teacher_state)
    model.tokenizer = AutoTokenizer.from_pretrained(teacher, **{**hub_kwargs, "revision": config.teacher_revision})
    if config.student_config is None:
        source, state = teacher, teacher_state
        _load_heads(model.query_head, config.head, teacher, config.teacher_revision, hub_kwargs)
    else:
        source, revision = config.student_name_or_path, kwargs.get("student_revision")
        state = _weights(model.query_encoder, source, {**hub_kwargs, "revision": revision})
        _load_heads(model.query_head, config.student_head, source, revision, hub_kwargs)
        model.student_tokenizer = AutoTokenizer.from_pretrained(source, **{**hub_kwargs, "revision": revision})
    stack_path = layer_stack_path(model.query_encoder)
    model.query_encoder.load_state_dict(student_state_dict(state, config.student_layers, stack_path))
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):  # as Trainer would align them, with a notice
        if getattr(model.tokenizer, name) is not None:
            setattr(model.config, name, getattr(model.tokenizer, name))
    model.config.teacher_weights_fingerprint = model.teacher_weights_fingerprint()  # what loaders check it against
    return model


def _weights(encoder: torch.nn.Module, name: str, hub_kwargs: dict) -> dict[str, torch.Tensor]:
    """The weights of the encoder saved at `name`, without a pooler (hfdistill's encoders pool token states)."""
    loaded = AutoModel.from_pretrained(name, **hub_kwargs)
    if loaded.dtype != torch.float32:
        logger.warning(
            "%r is stored in %s; hfdistill computes it in float32, where sentence-transformers computes it in %s, "
            "so their embeddings differ by that rounding. `model.to(%s)` computes as it does.",
            name,
            loaded.dtype,
            loaded.dtype,
            loaded.dtype,
        )
    return {k: v for k, v in loaded.state_dict().items() if not k.startswith("pooler.")}


def _load_heads(modules: torch.nn.ModuleList, head: list[dict], name: str, revision: str | None, hub_kwargs: dict):
    """Fill the Dense modules of `head` saved with the model at `name`; a Dense module of no folder (a student's map
    to the teacher's size) keeps its initialisation."""
    for index, module in enumerate(head):
        if module["type"] == "Dense" and module["path"]:
            dense = Dense.load(name, **module_hub_kwargs(module["path"], revision, hub_kwargs))
            modules[index].load_state_dict(dense.state_dict())


def _commit_of(resolved_file: str | None) -> str | None:
    """The Hub commit a cached file belongs to (`.../snapshots/<commit>/...`), None for local folders."""
    parts = (resolved_file or "").replace("\\", "/").split("/")
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else None


def load_student(name_or_path: str, **kwargs):
    """A saved hfdistill student (`AsymmetricDualEncoder.from_pretrained`), with one clear error naming the path for
    anything else: a missing folder, another kind of model, a damaged weights file."""
    local = Path(str(name_or_path)).expanduser()
    if not local.exists() and (str(name_or_path).startswith((".", "/", "~")) or str(name_or_path).count("/") != 1):
        raise FileNotFoundError(f"{str(name_or_path)!r}: no such folder (a Hub id has the form `namespace/name`).")
    if local.is_dir() and not (local / "config.json").is_file():
        raise ValueError(f"{str(name_or_path)!r} holds no config.json: not a saved student.")
    try:
        config_dict, _ = PreTrainedConfig.get_config_dict(name_or_path, **kwargs)
    except (OSError, ValueError) as error:
        reason = str(error).strip().split("\n")[0]
        raise FileNotFoundError(f"{name_or_path!r} is not a saved student: {reason}") from None
    model_type = config_dict.get("model_type")
    if model_type != AsymmetricDualEncoder.config_class.model_type:
        raise ValueError(
            f"{name_or_path!r} is not an hfdistill student (model_type={model_type!r}); distill one with "
            "recipes/distill.py or build it with hfdistill.from_teacher."
        )
    return AsymmetricDualEncoder.from_pretrained(name_or_path, **kwargs)
