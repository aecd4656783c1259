"""Asymmetric dual encoder: a small student encodes queries, the frozen teacher encodes documents.

A saved model carries both encoders' weights, so the repository is self-contained: documents are always encoded by
exactly the teacher the student was aligned to. The teacher is read as sentence-transformers reads it: its prompts,
and its head (`Pooling`, `Dense`, `Normalize`) built from sentence-transformers' own modules. The student is a few of
the teacher's layers, or of another, smaller encoder with its own tokenizer. This file imports only its config, its
persistence, transformers and sentence-transformers (relative imports only) so that `register_for_auto_class` can copy
them for `trust_remote_code` loading.
"""

import hashlib
import inspect
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel
from transformers.dynamic_module_utils import custom_object_save
from transformers.utils import SAFE_WEIGHTS_NAME, ModelOutput, cached_file, logging
from transformers.utils.logging import tqdm

from .configuration_asymmetric import HEAD_MODULES, AsymmetricDualEncoderConfig, layer_settings
from .persistence import ROUTES_FILE, STUDENT_TOKENIZER, check_side, load_routes, query_view, router_view, save_routes

LAYER_STACKS = ("encoder.layer", "transformer.layer", "layers", "encoder.layers")  # BERT/MPNet/XLM-R, DistilBERT,
# ModernBERT and decoders (Qwen3, Gemma3), others
logger = logging.get_logger(__name__)
_HUB_KWARGS = ("revision", "cache_dir", "token", "local_files_only", "subfolder")
_TOKENIZER_KWARGS = (*_HUB_KWARGS, "trust_remote_code")


@dataclass
class AsymmetricEncoderOutput(ModelOutput):
    """Pooled (and, if configured, normalized) query embeddings of the student."""

    query_embeds: torch.FloatTensor | None = None


def length_chunks(lengths: torch.Tensor, chunk_cost: int) -> list[torch.Tensor]:
    """Row indices of a batch in chunks of similar length, longest first, that cost the fewest tokens to encode when
    each chunk is padded to its own longest row and each chunk costs `chunk_cost` tokens more (an encoder call's
    fixed overhead). Exact, by dynamic programming over the sorted lengths."""
    order = lengths.argsort(descending=True, stable=True)
    ordered = lengths[order].tolist()
    best, cut = [0] + [None] * len(ordered), [0] * (len(ordered) + 1)
    for end in range(1, len(ordered) + 1):
        best[end], cut[end] = min(
            (best[start] + (end - start) * ordered[start] + chunk_cost, start) for start in range(end)
        )
    bounds, end = [], len(ordered)
    while end:
        bounds.append((cut[end], end))
        end = cut[end]
    return [order[start:end] for start, end in reversed(bounds)]


def layer_stack_path(encoder: nn.Module) -> str:
    """Dotted path of the encoder's list of transformer layers; an error naming the paths tried if it has none."""
    for path in LAYER_STACKS:
        module = encoder
        for name in path.split("."):
            module = getattr(module, name, None)
        if isinstance(module, nn.ModuleList):
            return path
    raise ValueError(
        f"{type(encoder).__name__} has no layer stack hfdistill knows (tried {', '.join(LAYER_STACKS)}): not a "
        "supported teacher architecture."
    )


def layer_stack(encoder: nn.Module) -> nn.ModuleList:
    """The encoder's list of transformer layers."""
    return encoder.get_submodule(layer_stack_path(encoder))


def set_layer_stack(encoder: nn.Module, layers: list[nn.Module]) -> None:
    """Replace the encoder's layers (e.g. by a subset of another encoder's)."""
    parent, _, name = layer_stack_path(encoder).rpartition(".")
    setattr(encoder.get_submodule(parent) if parent else encoder, name, nn.ModuleList(layers))


def student_state_dict(
    teacher_state: dict[str, torch.Tensor], layers: list[int], stack_path: str = "encoder.layer"
) -> dict[str, torch.Tensor]:
    """The teacher's weights with only `layers` of the layer stack at `stack_path` kept, renumbered 0..k-1."""
    layer_key = re.compile(rf"^({re.escape(stack_path)}\.)(\d+)(\..*)$")
    new_index = {old: new for new, old in enumerate(layers)}
    state = {}
    for key, value in teacher_state.items():
        match = layer_key.match(key)
        if match is None:
            state[key] = value
        elif int(match.group(2)) in new_index:
            state[f"{match.group(1)}{new_index[int(match.group(2))]}{match.group(3)}"] = value
    return state


def keep_layers(encoder: PreTrainedModel, teacher_stack, layers: list[int], teacher_config) -> None:
    """Make `encoder` run the teacher's `layers` (`teacher_stack[i]` for each, a list or a dict), with the config
    values that describe them (their number, per-layer attention types). The layers read their own settings when
    they were built; the model reads these on each forward. The config object stays the layers' own, with its
    attention implementation."""
    set_layer_stack(encoder, [teacher_stack[i] for i in layers])
    for key, value in layer_settings(teacher_config, layers).items():
        setattr(encoder.config, key, value)


def _encoder(config: AsymmetricDualEncoderConfig, student: bool) -> PreTrainedModel:
    """The teacher's architecture without its pooler; for the student, only the kept layers of its architecture (the
    teacher's, or `student_config`), each built as the full model builds it (ModernBERT's first layer differs from
    the others), with their per-layer settings."""
    architecture = config.student_build_config() if student else config.teacher_config
    encoder = AutoModel.from_config(  # float32 whatever the checkpoint's dtype: the student trains in it
        architecture, dtype=torch.float32, trust_remote_code=bool(getattr(architecture, "auto_map", None))
    )
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None  # sentence embeddings pool token states, and an unused layer would upset DDP
    stack = layer_stack(encoder)
    if student:
        keep_layers(encoder, stack, config.student_layers, config.student_architecture)
    return encoder


def build_head(head: list[dict]) -> nn.ModuleList:
    """sentence-transformers' own modules for the head described in the config (which refuses unknown types)."""
    return nn.ModuleList(HEAD_MODULES[module["type"]].build(module["config"]) for module in head)


class AsymmetricDualEncoder(PreTrainedModel):
    """Student query encoder (a few layers of the teacher, or of a smaller encoder) + frozen teacher document encoder.

    Args:
        config (`AsymmetricDualEncoderConfig`):
            The teacher's architecture, head and prompts, and which student to build. `from_teacher` builds one with
            the teacher's weights; `from_pretrained` reads a saved one.
    """

    config_class = AsymmetricDualEncoderConfig
    base_model_prefix = "asymmetric_dual_encoder"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True

    def __init__(self, config: AsymmetricDualEncoderConfig):
        super().__init__(config)
        self.query_encoder = _encoder(config, student=True)
        self.document_encoder = _encoder(config, student=False)
        self.query_head = build_head(config.student_head or config.head)
        self.document_head = build_head(config.head)
        if config.share_token_embeddings:  # one module: frozen with the teacher, stored once
            self.query_encoder.set_input_embeddings(self.document_encoder.get_input_embeddings())
        # decoders would build a key/value cache indexed by teacher layer numbers: embeddings need none
        self._no_cache = {
            name: "use_cache" in inspect.signature(getattr(self, name).forward).parameters
            for name in ("query_encoder", "document_encoder")
        }
        self.tokenizer = None  # the teacher's
        self.student_tokenizer = None  # a student that is another model's: its own
        self.post_init()
        self.freeze_document_encoder()

    def _init_weights(self, module: nn.Module) -> None:
        self.query_encoder._init_weights(module)

    def freeze_document_encoder(self) -> None:
        """The teacher defines the document index: it must never be updated."""
        self.document_encoder.requires_grad_(False)
        self.document_head.requires_grad_(False)
        self.document_encoder.eval()

    def teacher_tensors(self) -> list[tuple[str, torch.Tensor]]:
        """The document encoder's and head's tensors (the head's named `head.*`), sorted by name: what identifies
        the teacher."""
        head = {f"head.{name}": tensor for name, tensor in self.document_head.state_dict().items()}
        return sorted({**self.document_encoder.state_dict(), **head}.items())

    def teacher_weights_fingerprint(self) -> str:
        """A fingerprint of the document encoder's and head's weights: each tensor's name, shape and up to 4,096
        evenly spaced values, hashed. A training step changes it (it moves every weight); it reads samples, not
        gigabytes, so loading a large teacher stays fast."""
        digest = hashlib.sha256()
        for name, tensor in self.teacher_tensors():
            values = tensor.detach().flatten()
            sample = values[:: max(1, values.numel() // 4096)].to("cpu", torch.float64)
            digest.update(f"{name}{tuple(tensor.shape)}".encode() + sample.numpy().tobytes())
        return digest.hexdigest()[:32]

    def check_teacher_weights(self, where: str) -> None:
        """An error when the document weights differ from those the student was distilled against (see
        `teacher_weights_fingerprint` in the config); nothing to check for a student saved before it was recorded."""
        recorded = self.config.teacher_weights_fingerprint
        if recorded is not None and recorded != self.teacher_weights_fingerprint():
            raise ValueError(
                f"{where}: the document encoder's weights are not the teacher's the student was distilled against "
                "(they were trained or edited), so an index built with that teacher would no longer match its "
                "queries. Load the student saved by hfdistill, or pass accept_changed_teacher=True to load it anyway."
            )

    def query_parameters(self) -> list[nn.Parameter]:
        """The student's parameters: its layers and its head."""
        return [*self.query_encoder.parameters(), *self.query_head.parameters()]

    def train(self, mode: bool = True) -> "AsymmetricDualEncoder":
        super().train(mode)
        self.document_encoder.eval()
        return self

    def _embed(
        self, encoder: nn.Module, input_ids, attention_mask, token_type_ids=None, inputs_embeds=None
    ) -> tuple[torch.Tensor, ModelOutput]:
        """(sentence embeddings, the encoder's output) of one encoder and its head; from `inputs_embeds` (the token
        embeddings already looked up) instead of `input_ids` when given."""
        inputs = {"attention_mask": attention_mask}
        inputs.update({"inputs_embeds": inputs_embeds} if inputs_embeds is not None else {"input_ids": input_ids})
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        if self._no_cache["query_encoder" if encoder is self.query_encoder else "document_encoder"]:
            inputs["use_cache"] = False
        outputs = encoder(**inputs)
        features = {"token_embeddings": outputs.last_hidden_state, "attention_mask": attention_mask}
        for module in self.query_head if encoder is self.query_encoder else self.document_head:
            features = module(features)
        return features["sentence_embedding"], outputs

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        chunk_cost: int | None = None,
    ) -> AsymmetricEncoderOutput:
        """Student query embeddings of inputs tokenized with the student's prompt (see `tokenize_queries`).

        With `chunk_cost`, rows of similar length are encoded together, each chunk cut to its own longest row (see
        `length_chunks`): the same embeddings as one padded batch, for a fraction of the padding when lengths vary.
        The token embeddings are looked up once for the whole batch, so their table gets one gradient, not one per
        chunk (for a 250K-token vocabulary, hundreds of megabytes each).
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if chunk_cost is None:
            return AsymmetricEncoderOutput(
                query_embeds=self._embed(self.query_encoder, input_ids, attention_mask, token_type_ids)[0]
            )
        parts, rows = [], length_chunks(attention_mask.sum(-1), chunk_cost)
        token_embeddings = self.query_encoder.get_input_embeddings()(input_ids)
        for index in rows:
            mask = attention_mask[index]
            columns = mask.any(0)  # the chunk's tokens, whichever side the batch was padded on
            types = token_type_ids[index][:, columns] if token_type_ids is not None else None
            chunk = token_embeddings[index][:, columns]
            parts.append(self._embed(self.query_encoder, None, mask[:, columns], types, inputs_embeds=chunk)[0])
        embeds = torch.cat(parts)
        return AsymmetricEncoderOutput(query_embeds=embeds[torch.cat(rows).argsort()])

    @property
    def query_tokenizer(self):
        """The tokenizer the student reads queries with: its own for a student that is another model, else the
        teacher's."""
        return self.student_tokenizer if self.config.student_config is not None else self.tokenizer

    def tokenize_queries(self, queries: list[str], **kwargs):
        """Queries tokenized as the student reads them: its prompt first, cut at `max_length`."""
        prompt = self.config.student_prompt
        return self.query_tokenizer(
            [prompt + query for query in queries], truncation=True, max_length=self.config.max_length, **kwargs
        )

    @torch.inference_mode()
    def _encode(
        self,
        encoder: nn.Module,
        texts: list[str],
        prompt: str,
        batch_size: int,
        show_progress_bar: bool,
        desc: str,
        progress=None,
    ) -> torch.Tensor:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}.")
        tokenizer = self.query_tokenizer if encoder is self.query_encoder else self.tokenizer
        if tokenizer is None:
            raise ValueError("This model has no tokenizer attached; load it with from_pretrained or from_teacher.")
        if isinstance(texts, str):
            texts = [texts]
        was_training = self.training
        if was_training:
            self.eval()
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # similar lengths batch with little padding
        out = torch.empty(len(texts), self.config.embedding_dim)
        for start in tqdm(range(0, len(texts), batch_size), desc=desc, disable=not show_progress_bar):
            idx = order[start : start + batch_size]
            batch = tokenizer(
                [prompt + texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.config.max_length,
                return_tensors="pt",
            ).to(self.device)
            embeds, _ = self._embed(encoder, batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
            out[idx] = embeds.float().cpu()
            if progress is not None:  # a caller's progress bar (the teacher pass), moved per batch
                progress.update(len(idx))
        if was_training:
            self.train()
        return out

    def encode_queries(self, queries: list[str], batch_size: int = 32, show_progress_bar: bool = False):
        """Embed queries with the student (its prompt first): a `(n, d)` float tensor on CPU."""
        prompt = self.config.student_prompt
        return self._encode(self.query_encoder, queries, prompt, batch_size, show_progress_bar, "Student: queries")

    def encode_teacher_queries(
        self, queries: list[str], batch_size: int = 32, show_progress_bar: bool = False, progress=None
    ):
        """Embed queries with the frozen teacher and its query prompt (the distillation targets); `progress` (a
        `tqdm`) is moved by each batch."""
        prompt = self.config.query_prompt
        return self._encode(
            self.document_encoder, queries, prompt, batch_size, show_progress_bar, "Teacher: queries", progress
        )

    def encode_documents(
        self, documents: list[str], batch_size: int = 32, show_progress_bar: bool = False, progress=None
    ):
        """Embed documents with the frozen teacher and its document prompt: a `(n, d)` float tensor on CPU;
        `progress` (a `tqdm`) is moved by each batch."""
        prompt = self.config.document_prompt
        return self._encode(
            self.document_encoder, documents, prompt, batch_size, show_progress_bar, "Teacher: documents", progress
        )

    def to_sentence_transformer(self):
        """A `SentenceTransformer` whose `Router` sends queries to the student and documents to the teacher.

        `encode_query` / `encode_document` (and mteb's prompt types) then give the same numbers as
        `encode_queries` / `encode_documents`: the prompts and head modules are the model's own.
        """
        return router_view(self)

    def query_prompt_of(self, side: str) -> str:
        """The prompt `side` (`student` or `teacher`) reads queries with."""
        check_side(side)
        return self.config.student_prompt if side == "student" else self.config.query_prompt

    def query_sentence_transformer(self, side: str = "student"):
        """The query encoder of `side` (`student`, or `teacher` for baselines) alone, as a `SentenceTransformer`
        whose default prompt is that side's query prompt: `encode` and `encode_query` give `encode_queries`'s numbers
        (`encode_teacher_queries`'s for the teacher). Its vectors live in the teacher's document space."""
        return query_view(self, side)

    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        """Save one folder that is a sentence-transformers model and this transformers model, each tensor once (see
        `persistence`). A student that sentence-transformers cannot express (one sharing the teacher's token
        embeddings, a ModernBERT student without the teacher's first layer) is saved as a transformers model only,
        with a warning; other keyword arguments (`state_dict`, as `Trainer` passes them) then go to
        `PreTrainedModel.save_pretrained`."""
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        if self.config.teacher_weights_fingerprint is None:  # a student built before it was recorded
            self.config.teacher_weights_fingerprint = self.teacher_weights_fingerprint()
        reason = save_routes(self, save_directory)
        if reason is None:
            if self._auto_class is not None:
                custom_object_save(self, save_directory, config=self.config)
            self.config.architectures = [type(self).__name__]  # as PreTrainedModel.save_pretrained records it
            self.config.save_pretrained(save_directory)
        else:
            logger.warning("Saving %s for transformers only: %s", save_directory, reason)
            (save_directory / ROUTES_FILE).unlink(missing_ok=True)  # a stale layout would shadow these weights
            state = kwargs.pop("state_dict", None) or self.state_dict()
            shared = f"query_encoder.{self._token_embedding_key()}" if self.config.share_token_embeddings else None
            state = {key: value for key, value in state.items() if key != shared}  # the teacher's copy holds it
            super().save_pretrained(save_directory, *args, state_dict=state, **kwargs)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(save_directory)
        if self.config.student_config is not None and self.student_tokenizer is not None:
            self.student_tokenizer.save_pretrained(save_directory / STUDENT_TOKENIZER)

    def _token_embedding_key(self) -> str:
        """Name of the token embedding weight within an encoder (`embeddings.word_embeddings.weight` for BERT)."""
        weight = self.document_encoder.get_input_embeddings().weight
        return next(name for name, parameter in self.document_encoder.named_parameters() if parameter is weight)

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path, *model_args, accept_changed_teacher: bool = False, **kwargs
    ) -> "AsymmetricDualEncoder":
        """A saved student, its weights checked: a file that is damaged, holds non-finite values or does not fit the
        config is one error naming it. `config` may name a saved student's folder: a Router folder that
        sentence-transformers saved after training a student further (no hfdistill config of its own) then loads
        with that student's config, and `save_pretrained` writes it back for both loaders. A student whose document
        weights differ from the teacher's it was distilled against is refused (`check_teacher_weights`) unless
        `accept_changed_teacher=True`."""
        path = str(pretrained_model_name_or_path)
        hub_kwargs = {k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}
        routes = cached_file(path, ROUTES_FILE, _raise_exceptions_for_missing_entries=False, **hub_kwargs)
        structure = None
        if routes is None:  # saved for transformers only
            model, info = super().from_pretrained(path, *model_args, output_loading_info=True, **kwargs)
            wrong = [key for kind in ("missing_keys", "unexpected_keys", "mismatched_keys") for key in info[kind]]
            shared = f"query_encoder.{model._token_embedding_key()}" if model.config.share_token_embeddings else None
            wrong = [key for key in wrong if key != shared]  # stored once, in the teacher's copy
            if wrong:
                raise ValueError(
                    f"{path}/{SAFE_WEIGHTS_NAME} does not hold the weights its config describes "
                    f"({len(wrong)} differ, e.g. {str(wrong[0])[:120]})."
                )
            broken = [key for key, tensor in model.state_dict().items() if not torch.isfinite(tensor).all()]
            if broken:
                raise ValueError(
                    f"{path}/{SAFE_WEIGHTS_NAME} holds non-finite weights (NaN or inf) in {broken[:3]}: "
                    "the file is damaged or the training that wrote it diverged."
                )
        else:
            config = kwargs.get("config")
            if isinstance(config, (str, os.PathLike)):
                config = AsymmetricDualEncoderConfig.from_pretrained(config)
            if not isinstance(config, AsymmetricDualEncoderConfig):
                config = AsymmetricDualEncoderConfig.from_pretrained(path, **hub_kwargs)
            model = cls(config)
            with open(routes, encoding="utf-8") as f:
                structure = json.load(f)["structure"]
            load_routes(model, path, structure, hub_kwargs)
            model.eval()
        tokenizer_kwargs = {k: kwargs[k] for k in _TOKENIZER_KWARGS if k in kwargs}
        model.tokenizer = _tokenizer(
            path, model.config.teacher_config, structure and structure["document"][0], tokenizer_kwargs
        )
        if model.config.student_config is not None:
            folder = (
                STUDENT_TOKENIZER
                if cached_file(
                    path,
                    f"{STUDENT_TOKENIZER}/tokenizer_config.json",
                    _raise_exceptions_for_missing_entries=False,
                    **hub_kwargs,
                )
                else structure["query"][0]
            )
            model.student_tokenizer = _tokenizer(
                f"{path}", model.config.student_config, folder, tokenizer_kwargs, root=False
            )
        if not accept_changed_teacher:
            model.check_teacher_weights(path)
        model.freeze_document_encoder()
        return model


def _tokenizer(path: str, config, route: str | None, kwargs: dict, root: bool = True):
    """The tokenizer saved at the folder's root (or, with `root=False`, in `route`); a folder that
    sentence-transformers saved keeps it in the route folder only. Passing the encoder's config keeps AutoTokenizer
    from resolving (and asking to trust) hfdistill's custom config."""
    hub_kwargs = {k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}
    if root and cached_file(path, "tokenizer_config.json", _raise_exceptions_for_missing_entries=False, **hub_kwargs):
        return AutoTokenizer.from_pretrained(path, config=config, **kwargs)
    if route is None:
        raise ValueError(f"{path} holds no tokenizer.")
    subfolder = f"{kwargs['subfolder']}/{route}" if kwargs.get("subfolder") else route
    return AutoTokenizer.from_pretrained(path, config=config, **{**kwargs, "subfolder": subfolder})
