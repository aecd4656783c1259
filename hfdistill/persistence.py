"""How a student is saved and read back: one folder that is a sentence-transformers model and a transformers model.

The sentence-transformers files (`modules.json`, a `Router` whose `query_*` route holds the student and whose
`document_*` route holds the teacher, each with its weights, and the prompts) hold the weights; the folder's root holds
the transformers config, code and tokenizer, and `AsymmetricDualEncoder.from_pretrained` reads the weights from the
routes. The same modules give the sentence-transformers views of a student in memory (`router_view`, `query_view`).
This file is copied with the modeling file into saved models, for `trust_remote_code` loading.
"""

import inspect
import json
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from transformers.utils import SAFE_WEIGHTS_NAME, cached_file

ROUTES_FILE = "router_config.json"  # sentence-transformers' Router: where a saved student's weights are
STUDENT_TOKENIZER = "student_tokenizer"  # the tokenizer of a student that is another model, beside the teacher's
STUDENT_LAYERS_KEY = "hfdistill_student_layers"  # in the student route's config.json: the layers its weights hold
SIDES = ("student", "teacher")  # a student's query side, or its teacher's (the baseline it is measured against)
SHARED_EMBEDDINGS_SAVED_ONCE = (
    "the student shares the teacher's token embeddings, which sentence-transformers would store once per route; "
    "`AsymmetricDualEncoder.from_pretrained(path).to_sentence_transformer()` gives the SentenceTransformer"
)


class NotExpressibleError(ValueError):
    """The student has no sentence-transformers form (its encoder is not a plain model of its config)."""


def check_side(side: str) -> None:
    """One clear error for a side that is neither the student's nor the teacher's."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}.")


def without_pooler(encoder: nn.Module) -> dict:
    """The keyword that builds `encoder`'s architecture without the pooler hfdistill's encoders drop (BERT, MPNet,
    XLM-R: `add_pooling_layer=False`), so that a reload neither creates nor reports unused weights; `{}` for
    architectures without one."""
    return {"add_pooling_layer": False} if "add_pooling_layer" in inspect.signature(type(encoder)).parameters else {}


def declare_without_pooler(folder: Path, encoder: nn.Module) -> None:
    """Have sentence-transformers build the encoder saved in `folder` as it was saved, without a pooler (its
    `model_kwargs` in the folder's `sentence_bert_config.json`): loading it then reports no missing weights."""
    if kwargs := without_pooler(encoder):
        path = folder / "sentence_bert_config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "model_kwargs": kwargs}, indent=4))


def route_modules(model, name: str, side: str) -> list[nn.Module]:
    """sentence-transformers modules of one side of `model` (`student` or `teacher`): its encoder as a
    `Transformer`, then its head. They share the model's own modules, so a view sees the current weights and saving
    it writes them; sentence-transformers builds its `Transformer` from a folder, so the encoder is written and read
    back once per model, not on every save."""
    check_side(side)
    student = side == "student"
    encoder = model.query_encoder if student else model.document_encoder
    built = model.__dict__.setdefault("_route_transformers", {})  # not a submodule: no weights of its own
    if side not in built or built[side].model is not encoder:
        built[side] = _transformer(model, encoder, name, student)
    if student:  # what the saved weights are, checked against the model's config when read back
        setattr(encoder.config, STUDENT_LAYERS_KEY, list(model.config.student_layers))
    return [built[side], *(model.query_head if student else model.document_head)]


def _transformer(model, encoder: nn.Module, name: str, student: bool):
    """sentence-transformers' `Transformer` module around `encoder` itself, with the side's tokenizer."""
    from sentence_transformers.sentence_transformer.modules import Transformer

    with tempfile.TemporaryDirectory() as tmp:
        encoder.save_pretrained(f"{tmp}/{name}")
        (model.query_tokenizer if student else model.tokenizer).save_pretrained(f"{tmp}/{name}")
        transformer = Transformer(
            f"{tmp}/{name}", max_seq_length=model.config.max_length, model_kwargs=without_pooler(encoder)
        )
    rebuilt = set(transformer.model.state_dict())
    if rebuilt != set(encoder.state_dict()):
        raise NotExpressibleError(
            f"The {name} encoder is not a plain {type(encoder).__name__} of its config (weights "
            f"{sorted(rebuilt ^ set(encoder.state_dict()))[:4]} differ), e.g. a ModernBERT student "
            "without the teacher's first layer: sentence-transformers cannot load it."
        )
    transformer.model = encoder
    return transformer


def router_view(model):
    """A `SentenceTransformer` whose `Router` sends queries to the student and documents to the teacher. Plain
    `encode` is the student's `encode_query`, as every plain entry point of a saved student gives the student (the
    transformers model's forward, its feature-extraction pipeline); documents need `encode_document`."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Router

    router = Router.for_query_document(
        route_modules(model, "query", "student"), route_modules(model, "document", "teacher"), default_route="query"
    )
    return SentenceTransformer(
        modules=[router],
        similarity_fn_name=model.config.similarity,
        prompts={"query": model.config.student_prompt, "document": model.config.document_prompt},
        default_prompt_name="query" if model.config.student_prompt else None,
        device=model.device,
    )


def query_view(model, side: str = "student"):
    """The query encoder of `side` alone, as a `SentenceTransformer` whose default prompt is that side's query
    prompt."""
    from sentence_transformers import SentenceTransformer

    check_side(side)
    prompt = model.config.student_prompt if side == "student" else model.config.query_prompt
    return SentenceTransformer(
        modules=route_modules(model, "query", side),
        similarity_fn_name=model.config.similarity,
        prompts={"query": prompt},
        default_prompt_name="query" if prompt else None,
        device=model.device,
    )


def save_routes(model, directory: Path) -> str | None:
    """Write `model` into `directory` as sentence-transformers' Router layout; returns None, or why it cannot be
    (a student that shares the teacher's token embeddings, or one sentence-transformers cannot express)."""
    if model.config.share_token_embeddings:
        return SHARED_EMBEDDINGS_SAVED_ONCE
    try:
        view = router_view(model)
    except NotExpressibleError as error:
        return str(error)
    view.save(str(directory), create_model_card=False)
    structure = json.loads((directory / ROUTES_FILE).read_text())["structure"]
    for route, encoder in (("query", model.query_encoder), ("document", model.document_encoder)):
        declare_without_pooler(directory / structure[route][0], encoder)
    (directory / SAFE_WEIGHTS_NAME).unlink(missing_ok=True)  # a stale transformers-only file would shadow the routes
    return None


def read_weights(file: str, name: str) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors, all finite; one clear error naming the file otherwise."""
    try:
        state = load_file(file)
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{name}: not a readable safetensors file ({error}); save the student again.") from None
    broken = [key for key, tensor in state.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if broken:
        raise ValueError(
            f"{name} holds non-finite weights (NaN or inf) in {broken[:3]}: the file is damaged or the "
            "training that wrote it diverged."
        )
    return state


def load_into(module: nn.Module, state: dict[str, torch.Tensor], name: str) -> None:
    """`module.load_state_dict(state)`, with one line naming the file when they do not fit."""
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).split("\n\t")[1] if "\n\t" in str(error) else str(error)
        raise ValueError(f"{name} does not hold the weights its config describes ({first.strip()}).") from None


def load_routes(model, path: str, structure: dict, hub_kwargs: dict) -> None:
    """Fill `model`'s encoders and heads from the sentence-transformers route folders, checked against its config."""

    def file(relative: str) -> tuple[str, str]:
        return cached_file(path, relative, **hub_kwargs), f"{path}/{relative}"

    saved = json.loads(Path(file(f"{structure['query'][0]}/config.json")[0]).read_text()).get(STUDENT_LAYERS_KEY)
    if saved is not None and saved != list(model.config.student_layers):
        raise ValueError(
            f"{path}/config.json says student_layers {list(model.config.student_layers)}, but the student's weights "
            f"({structure['query'][0]}) are of the teacher's layers {saved}: the config was edited; restore it."
        )
    routes = {
        "query": (model.query_encoder, model.query_head),
        "document": (model.document_encoder, model.document_head),
    }
    for side, (encoder, head) in routes.items():
        transformer, *folders = structure[side]
        local, name = file(f"{transformer}/{SAFE_WEIGHTS_NAME}")
        load_into(encoder, read_weights(local, name), name)
        for folder, module in zip(folders, head):
            if next(module.parameters(), None) is not None:
                local, name = file(f"{folder}/{SAFE_WEIGHTS_NAME}")
                load_into(module, read_weights(local, name), name)
