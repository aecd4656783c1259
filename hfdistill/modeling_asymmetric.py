"""Asymmetric dual encoder: a small student encodes queries, the frozen teacher encodes documents.

A saved model carries both encoders' weights, so the repository is self-contained: documents are always encoded by
exactly the teacher the student was aligned to. The teacher is read as sentence-transformers reads it: its prompts,
and its head (`Pooling`, `Dense`, `Normalize`) built from sentence-transformers' own modules. This file imports only
its config, transformers and sentence-transformers (relative imports only) so that `register_for_auto_class` can copy
it for `trust_remote_code` loading.
"""

import copy
import inspect
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling
from sentence_transformers.util import import_from_string
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel
from transformers.dynamic_module_utils import custom_object_save
from transformers.utils import SAFE_WEIGHTS_NAME, ModelOutput, cached_file, logging
from transformers.utils.logging import tqdm

from .configuration_asymmetric import AsymmetricDualEncoderConfig, layer_settings, module_hub_kwargs

LAYER_STACKS = ("encoder.layer", "transformer.layer", "layers", "encoder.layers")  # BERT/MPNet/XLM-R, DistilBERT,
# ModernBERT and decoders (Qwen3, Gemma3), others
logger = logging.get_logger(__name__)
SIDES = ("student", "teacher")  # a student's query side, or its teacher's (the baseline it is measured against)
ROUTES_FILE = "router_config.json"  # sentence-transformers' Router: where a saved student's weights are
_HUB_KWARGS = ("revision", "cache_dir", "token", "local_files_only", "subfolder")
_TOKENIZER_KWARGS = (*_HUB_KWARGS, "trust_remote_code")


SHARED_EMBEDDINGS_SAVED_ONCE = (
    "the student shares the teacher's token embeddings, which sentence-transformers would store once per route; "
    "`AsymmetricDualEncoder.from_pretrained(path).to_sentence_transformer()` gives the SentenceTransformer"
)


class NotExpressibleError(ValueError):
    """The student has no sentence-transformers form (its encoder is not a plain model of its config)."""


@dataclass
class AsymmetricEncoderOutput(ModelOutput):
    """Pooled (and, if configured, normalized) query embeddings of the student; its per-layer token states if asked."""

    query_embeds: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


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
    """The teacher's architecture without its pooler; for the student, only the kept layers, each built as the
    teacher builds it (ModernBERT's first layer differs from the others), with their per-layer settings."""
    architecture = copy.deepcopy(config.teacher_config) if student else config.teacher_config
    encoder = AutoModel.from_config(  # float32 whatever the checkpoint's dtype: the student trains in it
        architecture, dtype=torch.float32, trust_remote_code=bool(getattr(architecture, "auto_map", None))
    )
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None  # sentence embeddings pool token states, and an unused layer would upset DDP
    stack = layer_stack(encoder)
    if student:
        keep_layers(encoder, stack, config.student_layers, config.teacher_config)
    return encoder


def check_side(side: str) -> None:
    """One clear error for a side that is neither the student's nor the teacher's."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}.")


def _without_pooler(encoder: nn.Module) -> dict:
    """The keyword that builds `encoder`'s architecture without the pooler hfdistill's encoders drop (BERT, MPNet,
    XLM-R: `add_pooling_layer=False`), so that a reload neither creates nor reports unused weights; `{}` for
    architectures without one."""
    return {"add_pooling_layer": False} if "add_pooling_layer" in inspect.signature(type(encoder)).parameters else {}


def build_head(head: list[dict]) -> nn.ModuleList:
    """sentence-transformers' own modules for the head described in the config."""
    modules = []
    for module in head:
        config = dict(module["config"])
        if module["type"] == "Pooling":
            modules.append(Pooling(**config))
        elif module["type"] == "Dense":
            activation = import_from_string(config.pop("activation_function", "torch.nn.modules.activation.Tanh"))
            modules.append(Dense(**config, activation_function=activation()))
        else:
            modules.append(Normalize())
    return nn.ModuleList(modules)


class AsymmetricDualEncoder(PreTrainedModel):
    """Student query encoder (a few teacher layers) + frozen teacher document encoder, sharing one tokenizer."""

    config_class = AsymmetricDualEncoderConfig
    base_model_prefix = "asymmetric_dual_encoder"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True

    def __init__(self, config: AsymmetricDualEncoderConfig):
        super().__init__(config)
        self.query_encoder = _encoder(config, student=True)
        self.document_encoder = _encoder(config, student=False)
        self.query_head = build_head(config.head)
        self.document_head = build_head(config.head)
        size = config.embedding_dim
        self.query_projection = nn.Linear(size, size) if config.projection_dim else None
        if config.share_token_embeddings:  # one module: frozen with the teacher, stored once
            self.query_encoder.set_input_embeddings(self.document_encoder.get_input_embeddings())
        # decoders would build a key/value cache indexed by teacher layer numbers: embeddings need none
        self._no_cache = "use_cache" in inspect.signature(self.document_encoder.forward).parameters
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
        self.document_head.requires_grad_(False)
        self.document_encoder.eval()

    def query_parameters(self) -> list[nn.Parameter]:
        """The student's parameters: its layers, its head and the projection (if any)."""
        projection = list(self.query_projection.parameters()) if self.query_projection is not None else []
        return [*self.query_encoder.parameters(), *self.query_head.parameters(), *projection]

    def train(self, mode: bool = True) -> "AsymmetricDualEncoder":
        super().train(mode)
        self.document_encoder.eval()
        return self

    def _embed(
        self, encoder: nn.Module, input_ids, attention_mask, token_type_ids=None, output_hidden_states: bool = False
    ) -> tuple[torch.Tensor, ModelOutput]:
        """(sentence embeddings, the encoder's output: last token states, those of every layer if asked for) of one
        encoder and its head."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        if self._no_cache:
            inputs["use_cache"] = False
        outputs = encoder(**inputs, output_hidden_states=output_hidden_states)
        features = {"token_embeddings": outputs.last_hidden_state, "attention_mask": attention_mask}
        for module in self.query_head if encoder is self.query_encoder else self.document_head:
            features = module(features)
        embeds = features["sentence_embedding"]
        if encoder is self.query_encoder and self.query_projection is not None:
            embeds = self.query_projection(embeds)
            embeds = nn.functional.normalize(embeds, dim=-1) if self.config.normalize else embeds
        return embeds, outputs

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> AsymmetricEncoderOutput:
        """Student query embeddings of inputs tokenized with the student's prompt (see `tokenize_queries`)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        embeds, outputs = self._embed(
            self.query_encoder, input_ids, attention_mask, token_type_ids, output_hidden_states
        )
        return AsymmetricEncoderOutput(query_embeds=embeds, hidden_states=outputs.hidden_states)

    def tokenize_queries(self, queries: list[str], **kwargs):
        """Queries tokenized as the student reads them: its prompt first, cut at `max_length`."""
        prompt = self.config.student_prompt
        return self.tokenizer(
            [prompt + query for query in queries], truncation=True, max_length=self.config.max_length, **kwargs
        )

    @torch.inference_mode()
    def _encode(
        self, encoder: nn.Module, texts: list[str], prompt: str, batch_size: int, show_progress_bar: bool, desc: str
    ) -> torch.Tensor:
        if self.tokenizer is None:
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
            batch = self.tokenizer(
                [prompt + texts[i] for i in idx],
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
        """Embed queries with the student (its prompt first): a `(n, d)` float tensor on CPU."""
        prompt = self.config.student_prompt
        return self._encode(self.query_encoder, queries, prompt, batch_size, show_progress_bar, "Student: queries")

    def encode_teacher_queries(self, queries: list[str], batch_size: int = 32, show_progress_bar: bool = False):
        """Embed queries with the frozen teacher and its query prompt (the distillation targets)."""
        prompt = self.config.query_prompt
        return self._encode(self.document_encoder, queries, prompt, batch_size, show_progress_bar, "Teacher: queries")

    def encode_documents(self, documents: list[str], batch_size: int = 32, show_progress_bar: bool = False):
        """Embed documents with the frozen teacher and its document prompt: a `(n, d)` float tensor on CPU."""
        prompt = self.config.document_prompt
        return self._encode(
            self.document_encoder, documents, prompt, batch_size, show_progress_bar, "Teacher: documents"
        )

    def _route_modules(self, name: str, side: str) -> list[nn.Module]:
        """sentence-transformers modules of one side (`student` or `teacher`): its encoder as a `Transformer`, its
        head, and the projection (a `Dense`, then `Normalize` if the model normalizes) of a student that has one."""
        from sentence_transformers.sentence_transformer.modules import Transformer

        student = side == "student"
        encoder = self.query_encoder if student else self.document_encoder
        head, projection = (self.query_head, self.query_projection) if student else (self.document_head, None)
        with tempfile.TemporaryDirectory() as tmp:
            encoder.save_pretrained(f"{tmp}/{name}")
            self.tokenizer.save_pretrained(f"{tmp}/{name}")
            transformer = Transformer(
                f"{tmp}/{name}", max_seq_length=self.config.max_length, model_kwargs=_without_pooler(encoder)
            )
        rebuilt = set(transformer.model.state_dict())
        if rebuilt != set(encoder.state_dict()):
            raise NotExpressibleError(
                f"The {name} encoder is not a plain {type(encoder).__name__} of its config (weights "
                f"{sorted(rebuilt ^ set(encoder.state_dict()))[:4]} differ), e.g. a ModernBERT student "
                "without the teacher's first layer: sentence-transformers cannot load it."
            )
        modules = [transformer, *copy.deepcopy(head)]
        if projection is not None:
            dense = Dense(projection.in_features, projection.out_features, activation_function=nn.Identity())
            dense.linear.load_state_dict(projection.state_dict())
            modules += [dense, Normalize()] if self.config.normalize else [dense]
        return modules

    def to_sentence_transformer(self):
        """A `SentenceTransformer` whose `Router` sends queries to the student and documents to the teacher.

        `encode_query` / `encode_document` (and mteb's prompt types) then give the same numbers as
        `encode_queries` / `encode_documents`: the prompts and head modules are the model's own.
        """
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Router

        router = Router.for_query_document(
            self._route_modules("query", "student"), self._route_modules("document", "teacher")
        )
        return SentenceTransformer(
            modules=[router],
            similarity_fn_name=self.config.similarity,
            prompts={"query": self.config.student_prompt, "document": self.config.document_prompt},
            device=self.device,
        )

    def query_prompt_of(self, side: str) -> str:
        """The prompt `side` (`student` or `teacher`) reads queries with."""
        check_side(side)
        return self.config.student_prompt if side == "student" else self.config.query_prompt

    def query_sentence_transformer(self, side: str = "student"):
        """The query encoder of `side` (`student`, or `teacher` for baselines) alone, as a `SentenceTransformer`
        whose default prompt is that side's query prompt: `encode` and `encode_query` give `encode_queries`'s numbers
        (`encode_teacher_queries`'s for the teacher). Its vectors live in the teacher's document space."""
        from sentence_transformers import SentenceTransformer

        prompt = self.query_prompt_of(side)  # a bad side fails here, before any encoder is rebuilt
        return SentenceTransformer(
            modules=self._route_modules("query", side),
            similarity_fn_name=self.config.similarity,
            prompts={"query": prompt},
            default_prompt_name="query",
            device=self.device,
        )

    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        """Save one folder that is a sentence-transformers model and this transformers model, each tensor once.

        The sentence-transformers files (`modules.json`, a `Router` whose `query_*` route holds the student and whose
        `document_*` route holds the teacher, each with its weights, and the prompts) hold the weights; the root holds
        this model's config, code and tokenizer, and `from_pretrained` reads the weights from the routes. A student
        that sentence-transformers cannot express (a ModernBERT student without the teacher's first layer) is saved as
        a transformers model only, with a warning. Other keyword arguments (`state_dict`, `safe_serialization`, as
        `Trainer` passes them) then go to `PreTrainedModel.save_pretrained`.
        """
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        if self.config.share_token_embeddings:
            view, reason = None, SHARED_EMBEDDINGS_SAVED_ONCE
        else:
            try:
                view, reason = self.to_sentence_transformer(), None
            except NotExpressibleError as error:
                view, reason = None, str(error)
        if view is None:
            logger.warning("Saving %s for transformers only: %s", save_directory, reason)
            (save_directory / ROUTES_FILE).unlink(missing_ok=True)  # a stale layout would shadow these weights
            state = kwargs.pop("state_dict", None) or self.state_dict()
            shared = f"query_encoder.{self._token_embedding_key()}" if self.config.share_token_embeddings else None
            state = {key: value for key, value in state.items() if key != shared}  # the teacher's copy holds it
            super().save_pretrained(save_directory, *args, state_dict=state, **kwargs)
        else:
            view.save(str(save_directory), create_model_card=False)
            self._declare_without_pooler(save_directory)
            (save_directory / SAFE_WEIGHTS_NAME).unlink(missing_ok=True)
            if self._auto_class is not None:
                custom_object_save(self, save_directory, config=self.config)
            self.config.save_pretrained(save_directory)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(save_directory)

    def _declare_without_pooler(self, save_directory: Path) -> None:
        """Have sentence-transformers build each route's encoder as saved, without a pooler (its `model_kwargs` in the
        route's `sentence_bert_config.json`): loading the student then reports no missing weights."""
        structure = json.loads((save_directory / ROUTES_FILE).read_text())["structure"]
        for route, encoder in (("query", self.query_encoder), ("document", self.document_encoder)):
            if kwargs := _without_pooler(encoder):
                path = save_directory / structure[route][0] / "sentence_bert_config.json"
                path.write_text(json.dumps({**json.loads(path.read_text()), "model_kwargs": kwargs}, indent=4))

    def _token_embedding_key(self) -> str:
        """Name of the token embedding weight within an encoder (`embeddings.word_embeddings.weight` for BERT)."""
        weight = self.document_encoder.get_input_embeddings().weight
        return next(name for name, parameter in self.document_encoder.named_parameters() if parameter is weight)

    def _load_routes(self, path: str, structure: dict, hub_kwargs: dict) -> None:
        """Fill the encoders, heads and projection from the sentence-transformers route folders."""

        def weights(folder: str) -> dict[str, torch.Tensor]:
            return load_file(cached_file(path, f"{folder}/{SAFE_WEIGHTS_NAME}", **hub_kwargs))

        projection = [self.query_projection] if self.query_projection is not None else []
        routes = {
            "query": (self.query_encoder, [*self.query_head, *projection]),
            "document": (self.document_encoder, list(self.document_head)),
        }
        for side, (encoder, modules) in routes.items():
            transformer, *folders = structure[side]
            encoder.load_state_dict(weights(transformer))
            for folder, module in zip(folders, modules):
                if next(module.parameters(), None) is None:
                    continue
                state = weights(folder)
                if isinstance(module, nn.Linear):  # the projection, saved as a Dense module
                    state = {key.removeprefix("linear."): value for key, value in state.items()}
                module.load_state_dict(state)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs) -> "AsymmetricDualEncoder":
        path = str(pretrained_model_name_or_path)
        hub_kwargs = {k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}
        routes = cached_file(path, ROUTES_FILE, _raise_exceptions_for_missing_entries=False, **hub_kwargs)
        if routes is None:  # saved for transformers only
            model = super().from_pretrained(path, *model_args, **kwargs)
        else:
            config = kwargs.get("config")
            if not isinstance(config, AsymmetricDualEncoderConfig):
                config = AsymmetricDualEncoderConfig.from_pretrained(path, **hub_kwargs)
            model = cls(config)
            with open(routes, encoding="utf-8") as f:
                model._load_routes(path, json.load(f)["structure"], hub_kwargs)
            model.eval()
        tokenizer_kwargs = {k: kwargs[k] for k in _TOKENIZER_KWARGS if k in kwargs}
        # Passing the teacher's config keeps AutoTokenizer from resolving (and asking to trust) the custom config.
        model.tokenizer = AutoTokenizer.from_pretrained(path, config=model.config.teacher_config, **tokenizer_kwargs)
        model.freeze_document_encoder()
        return model

    @classmethod
    def from_teacher(
        cls, teacher: str, student_layers: list[int] | str = "top_bottom", num_student_layers: int = 2, **kwargs
    ) -> "AsymmetricDualEncoder":
        """Build a student from a Hub (or local) teacher: explicit layer indices or a strategy name and a count.

        Other keyword arguments (`revision`, `pooling`, `normalize`, `similarity`, `projection_dim`, `max_length`,
        the prompts, `trust_remote_code`, hub options) go to `AsymmetricDualEncoderConfig.from_teacher`, which
        checks them before any weights are loaded.
        """
        config = AsymmetricDualEncoderConfig.from_teacher(teacher, student_layers, num_student_layers, **kwargs)
        model = cls(config)  # an architecture without a known layer stack fails here, before the download
        hub_kwargs = {k: kwargs[k] for k in _TOKENIZER_KWARGS if k in kwargs}
        hub_kwargs["revision"] = config.teacher_revision
        teacher_model = AutoModel.from_pretrained(teacher, **hub_kwargs)
        if teacher_model.dtype != torch.float32:
            logger.warning(
                "Teacher %r is stored in %s; hfdistill computes it in float32, where sentence-transformers computes "
                "it in %s, so their embeddings differ by that rounding. `model.to(%s)` computes as it does.",
                teacher, teacher_model.dtype, teacher_model.dtype, teacher_model.dtype,
            )  # fmt: skip
        teacher_state = {k: v for k, v in teacher_model.state_dict().items() if not k.startswith("pooler.")}
        model.document_encoder.load_state_dict(teacher_state)
        stack_path = layer_stack_path(model.document_encoder)
        model.query_encoder.load_state_dict(student_state_dict(teacher_state, config.student_layers, stack_path))
        for index, module in enumerate(config.head):
            if module["type"] == "Dense":
                dense = Dense.load(teacher, **module_hub_kwargs(module["path"], config.teacher_revision, hub_kwargs))
                for head in (model.query_head, model.document_head):
                    head[index].load_state_dict(dense.state_dict())
        model.tokenizer = AutoTokenizer.from_pretrained(teacher, **hub_kwargs)
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):  # as Trainer would align them, with a notice
            if getattr(model.tokenizer, name) is not None:
                setattr(model.config, name, getattr(model.tokenizer, name))
        return model
