"""Asymmetric dual encoder: a small student encodes queries, the frozen teacher encodes documents.

A saved model carries both encoders' weights, so the repository is self-contained: documents are always encoded by
exactly the teacher the student was aligned to. This file imports only its config and transformers (relative imports
only) so that `register_for_auto_class` can copy it for `trust_remote_code` loading.
"""

import re
import tempfile
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel
from transformers.utils import ModelOutput
from transformers.utils.logging import tqdm

from .configuration_asymmetric import AsymmetricDualEncoderConfig

_LAYER_KEY = re.compile(r"^(.*\bencoder\.layer\.)(\d+)(\..*)$")
_TOKENIZER_KWARGS = ("revision", "cache_dir", "token", "local_files_only", "subfolder")


@dataclass
class AsymmetricEncoderOutput(ModelOutput):
    """Pooled (and, if configured, normalized) query embeddings of the student; its per-layer token states if asked."""

    query_embeds: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Sentence embedding from token states, as sentence-transformers' Pooling module computes it."""
    if mode == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def student_state_dict(teacher_state: dict[str, torch.Tensor], layers: list[int]) -> dict[str, torch.Tensor]:
    """The teacher's weights with only `layers` kept in `encoder.layer`, renumbered 0..k-1 (BERT, MPNet, ...)."""
    new_index = {old: new for new, old in enumerate(layers)}
    state = {}
    for key, value in teacher_state.items():
        match = _LAYER_KEY.match(key)
        if match is None:
            state[key] = value
        elif int(match.group(2)) in new_index:
            state[f"{match.group(1)}{new_index[int(match.group(2))]}{match.group(3)}"] = value
    return state


def _headless(encoder: PreTrainedModel) -> PreTrainedModel:
    """Drop the pooler: sentence embeddings pool token states, and an unused layer would upset DDP."""
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None
    if not hasattr(getattr(encoder, "encoder", None), "layer"):
        raise ValueError(f"{type(encoder).__name__} has no `encoder.layer` stack: not a supported encoder teacher.")
    return encoder


class AsymmetricDualEncoder(PreTrainedModel):
    """Student query encoder (a few teacher layers) + frozen teacher document encoder, sharing one tokenizer."""

    config_class = AsymmetricDualEncoderConfig
    base_model_prefix = "asymmetric_dual_encoder"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True

    def __init__(self, config: AsymmetricDualEncoderConfig):
        super().__init__(config)
        self.query_encoder = _headless(AutoModel.from_config(config.student_config()))
        self.document_encoder = _headless(AutoModel.from_config(config.teacher_config))
        hidden = config.teacher_config.hidden_size
        self.query_projection = nn.Linear(hidden, hidden) if config.projection_dim else None
        self.tokenizer = None
        self.post_init()
        self.freeze_document_encoder()

    def _init_weights(self, module: nn.Module) -> None:
        if module is self.query_projection:
            nn.init.eye_(module.weight)
            nn.init.zeros_(module.bias)
        else:
            self.query_encoder._init_weights(module)

    def freeze_document_encoder(self) -> None:
        """The teacher defines the document index: it must never be updated."""
        self.document_encoder.requires_grad_(False)
        self.document_encoder.eval()

    def train(self, mode: bool = True) -> "AsymmetricDualEncoder":
        super().train(mode)
        self.document_encoder.eval()
        return self

    def _embed(
        self, encoder: nn.Module, input_ids, attention_mask, token_type_ids=None, output_hidden_states: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """(sentence embeddings, token states of every layer if asked for) of one encoder."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        outputs = encoder(**inputs, output_hidden_states=output_hidden_states)
        embeds = pool(outputs.last_hidden_state, attention_mask, self.config.pooling)
        if encoder is self.query_encoder and self.query_projection is not None:
            embeds = self.query_projection(embeds)
        embeds = nn.functional.normalize(embeds, dim=-1) if self.config.normalize else embeds
        return embeds, outputs.hidden_states

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> AsymmetricEncoderOutput:
        """Student query embeddings; the document side is reached through `encode_documents`/`embed_documents`."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        embeds, hidden_states = self._embed(
            self.query_encoder, input_ids, attention_mask, token_type_ids, output_hidden_states
        )
        return AsymmetricEncoderOutput(query_embeds=embeds, hidden_states=hidden_states)

    def embed_documents(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """Teacher embeddings of tokenized texts (documents, or queries as distillation targets)."""
        return self._embed(self.document_encoder, input_ids, attention_mask, token_type_ids)[0]

    @torch.inference_mode()
    def _encode(self, encoder: nn.Module, texts: list[str], batch_size: int, show_progress_bar: bool, desc: str):
        if self.tokenizer is None:
            raise ValueError("This model has no tokenizer attached; load it with from_pretrained or from_teacher.")
        if isinstance(texts, str):
            texts = [texts]
        was_training = self.training
        if was_training:
            self.eval()
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # similar lengths batch with little padding
        out = torch.empty(len(texts), self.config.teacher_config.hidden_size)
        for start in tqdm(range(0, len(texts), batch_size), desc=desc, disable=not show_progress_bar):
            idx = order[start : start + batch_size]
            batch = self.tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.config.max_length,
                return_tensors="pt",
            ).to(self.device)
            embeds, _ = self._embed(encoder, batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
            out[idx] = embeds.float().cpu()
        if was_training:
            self.train()
        return out

    def encode_queries(self, queries: list[str], batch_size: int = 32, show_progress_bar: bool = False):
        """Embed queries with the student: a `(n, d)` float tensor on CPU."""
        return self._encode(self.query_encoder, queries, batch_size, show_progress_bar, "Encoding queries")

    def encode_documents(self, documents: list[str], batch_size: int = 32, show_progress_bar: bool = False):
        """Embed documents (or any text) with the frozen teacher: a `(n, d)` float tensor on CPU."""
        return self._encode(self.document_encoder, documents, batch_size, show_progress_bar, "Encoding documents")

    def to_sentence_transformer(self):
        """A `SentenceTransformer` whose `Router` sends queries to the student and documents to the teacher.

        `encode_query` / `encode_document` (and mteb's prompt types) then give the same numbers as
        `encode_queries` / `encode_documents`.
        """
        try:
            from sentence_transformers import SentenceTransformer
            from sentence_transformers.sentence_transformer.modules import (
                Dense,
                Normalize,
                Pooling,
                Router,
                Transformer,
            )
        except ImportError as error:
            raise ImportError("to_sentence_transformer needs `pip install sentence-transformers`.") from error

        with tempfile.TemporaryDirectory() as tmp:

            def route(name: str, encoder: nn.Module, projection: nn.Linear | None) -> list:
                encoder.save_pretrained(f"{tmp}/{name}")
                self.tokenizer.save_pretrained(f"{tmp}/{name}")
                transformer = Transformer(f"{tmp}/{name}", max_seq_length=self.config.max_length)
                modules = [
                    transformer,
                    Pooling(transformer.get_embedding_dimension(), pooling_mode=self.config.pooling),
                ]
                if projection is not None:
                    dense = Dense(projection.in_features, projection.out_features, activation_function=nn.Identity())
                    dense.linear.load_state_dict(projection.state_dict())
                    modules.append(dense)
                return modules + [Normalize()] if self.config.normalize else modules

            router = Router.for_query_document(
                route("query", self.query_encoder, self.query_projection),
                route("document", self.document_encoder, None),
            )
            return SentenceTransformer(modules=[router], similarity_fn_name=self.config.similarity, device=self.device)

    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        super().save_pretrained(save_directory, *args, **kwargs)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(save_directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs) -> "AsymmetricDualEncoder":
        model = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        tokenizer_kwargs = {k: kwargs[k] for k in _TOKENIZER_KWARGS if k in kwargs}
        # Passing the teacher's config keeps AutoTokenizer from resolving (and asking to trust) the custom config.
        model.tokenizer = AutoTokenizer.from_pretrained(
            pretrained_model_name_or_path, config=model.config.teacher_config, **tokenizer_kwargs
        )
        model.freeze_document_encoder()
        return model

    @classmethod
    def from_teacher(
        cls, teacher: str, student_layers: list[int] | str = "top_bottom", num_student_layers: int = 2, **kwargs
    ) -> "AsymmetricDualEncoder":
        """Build a student from a Hub (or local) teacher: explicit layer indices or a strategy name and a count.

        Other keyword arguments (`revision`, `pooling`, `normalize`, `similarity`, `projection_dim`, `max_length`,
        hub options) go to `AsymmetricDualEncoderConfig.from_teacher`.
        """
        config = AsymmetricDualEncoderConfig.from_teacher(teacher, student_layers, num_student_layers, **kwargs)
        hub_kwargs = {k: kwargs[k] for k in _TOKENIZER_KWARGS if k in kwargs}
        hub_kwargs["revision"] = config.teacher_revision
        teacher_model = AutoModel.from_pretrained(teacher, **hub_kwargs)
        model = cls(config)
        teacher_state = {k: v for k, v in teacher_model.state_dict().items() if not k.startswith("pooler.")}
        model.document_encoder.load_state_dict(teacher_state)
        model.query_encoder.load_state_dict(student_state_dict(teacher_state, config.student_layers))
        model.tokenizer = AutoTokenizer.from_pretrained(teacher, **hub_kwargs)
        return model
