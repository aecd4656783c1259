"""A student's query side (or its teacher's) outside PyTorch: ONNX export, optional int8 dynamic quantization, and a
small ONNX Runtime encoder with the student's `encode_queries`.

The exported folder is the query side as a sentence-transformers model (`SentenceTransformer(folder)` loads it, its
query prompt the default), with its ONNX graphs where sentence-transformers looks for them (`onnx/`). One graph has two
outputs: the encoder's token states (`last_hidden_state`, what sentence-transformers' ONNX backend reads and pools) and
the final query embedding (`sentence_embedding`: encoder, pooling, any Dense layer and normalization, what
`OnnxQueryEncoder` reads, with no torch op between two runs). It is exported by `torch.onnx.export` and quantized by
`onnxruntime.quantization.quantize_dynamic` (no graph surgery here). Document embeddings stay the teacher's torch ones:
the index does not change.
"""

import importlib.util
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import AutoTokenizer

from .modeling_asymmetric import AsymmetricDualEncoder
from .persistence import NotExpressibleError, check_side, declare_without_pooler
from .run_files import ENCODER_FILE
from .static import MODEL2VEC_HELP

BACKENDS = ("onnx", "static", "model2vec")  # static, model2vec: a 0-layer student as token vectors (static.py)
STATIC_BACKENDS = ("static", "model2vec")
QUANTIZATIONS = ("int8",)
# every exported way to serve a query encoder: its name (in benchmarks, results files and cards) -> its quantization;
# the benchmark, the exported encoder and the model card read this table
SERVING_BACKENDS = {"onnx": None, "onnx-int8": "int8"}
ONNX_FILES = {None: "model.onnx", "int8": "model_qint8.onnx"}
ONNX_HELP = "pip install 'hfdistill[onnx]' (onnxruntime, onnx, onnxscript)"
OUTPUTS = ("last_hidden_state", "sentence_embedding")
# sentence-transformers' ONNX backend runs today only in its 5.x line (optimum-onnx does not support transformers 5
# yet, huggingface/optimum-onnx#114). Of the modules a query side uses, only Normalize moved in 6.0; its 5.x path,
# which 6.x still imports, keeps the folder loadable by both.
PORTABLE_MODULE_TYPES = {
    "sentence_transformers.base.modules.normalize.Normalize": (
        "sentence_transformers.sentence_transformer.modules.normalize.Normalize"
    )
}
logger = logging.getLogger(__name__)


def _require_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ImportError(f"ONNX export and inference need onnxruntime: {ONNX_HELP}.") from None
    return onnxruntime


def check_export(backend: str, quantize: str | None, side: str = "student") -> None:
    """One clear error for an unknown backend, quantization or side, or a missing runtime, before any work."""
    check_side(side)
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}; choose one of {BACKENDS}.")
    if backend in STATIC_BACKENDS:
        if quantize is not None:
            raise ValueError("A static query encoder is a lookup of float vectors: it takes no --quantize.")
        if side != "student":
            raise ValueError("A static query encoder is made from the student alone; the teacher has layers.")
        if backend == "model2vec" and importlib.util.find_spec("model2vec") is None:
            raise ImportError(f"--backend model2vec needs model2vec: {MODEL2VEC_HELP}.")
        return
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ValueError(f"Unknown quantization {quantize!r} for backend {backend!r}; choose one of {QUANTIZATIONS}.")
    _require_onnxruntime()


class _QueryEmbedding(nn.Module):
    """Token ids and attention mask to the encoder's token states and the final query embedding of one side of the
    model, as one graph."""

    def __init__(self, model: AsymmetricDualEncoder, side: str):
        super().__init__()
        self.model, self.side = model, side

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        encoder = self.model.query_encoder if self.side == "student" else self.model.document_encoder
        embeds, outputs = self.model._embed(encoder, input_ids, attention_mask)
        return outputs.last_hidden_state, embeds


def _onnx_export(graph: nn.Module, inputs: tuple, path: Path) -> None:
    """torch's TorchScript exporter (fast), or its dynamo exporter for what TorchScript cannot trace (Gemma 3)."""
    options = dict(
        input_names=["input_ids", "attention_mask"],
        output_names=list(OUTPUTS),
        dynamic_axes={name: {0: "batch", 1: "tokens"} for name in ("input_ids", "attention_mask", OUTPUTS[0])}
        | {OUTPUTS[1]: {0: "batch"}},
        opset_version=18,
    )
    with warnings.catch_warnings():  # tracing notes about shapes fixed in the graph: nothing a user acts on
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator", category=UserWarning)
        try:
            torch.onnx.export(graph, inputs, str(path), dynamo=False, **options)
        except RuntimeError:
            torch.onnx.export(graph, inputs, str(path), dynamo=True, **options)


def save_query_encoder(
    model: AsymmetricDualEncoder, directory: str | Path, side: str = "student", static: str | None = None
) -> None:
    """Write the query encoder of `side` (`student`, or `teacher` for side-by-side baselines) to `directory` as a
    plain sentence-transformers model (see `AsymmetricDualEncoder.query_sentence_transformer`; no remote code, no
    document encoder) with `ENCODER_FILE`, which names the teacher whose index it queries. `static="static"` writes a
    0-layer student as static token vectors instead (`static.static_sentence_transformer`), `static="model2vec"` as a
    model2vec `StaticModel` (`static.model2vec_model`). A student that
    sentence-transformers cannot express gets its tokenizer and `ENCODER_FILE` only, with a warning."""
    check_side(side)
    directory = Path(directory)
    model = model.eval().to("cpu")
    if static == "model2vec":
        from .static import model2vec_model

        model2vec_model(model).save_pretrained(str(directory))
    elif static == "static":
        from .static import static_sentence_transformer

        static_sentence_transformer(model).save(str(directory), create_model_card=False)
    else:
        _save_query_view(model, directory, side)
    teacher_layers = list(range(model.config.teacher_config.num_hidden_layers))
    _write_encoder_file(
        directory,
        {
            "side": side,
            "teacher": model.config.teacher_name_or_path,
            "teacher_revision": model.config.teacher_revision,
            "layers": list(model.config.student_layers if side == "student" else teacher_layers),
            "prompt": model.query_prompt_of(side),
            "document_prompt": model.config.document_prompt,
            "max_length": model.config.max_length,
            "embedding_dim": model.config.embedding_dim,
            "static": static is not None,
            "file_name": None,
            "quantize": None,
        },
    )


def _save_query_view(model: AsymmetricDualEncoder, directory: Path, side: str) -> None:
    """`AsymmetricDualEncoder.query_sentence_transformer`'s folder, loadable by sentence-transformers 5.x and 6.x; a
    student sentence-transformers cannot express gets its tokenizer only, with a warning."""
    try:
        model.query_sentence_transformer(side).save(str(directory), create_model_card=False)
        modules = json.loads((directory / "modules.json").read_text())
        for module in modules:
            module["type"] = PORTABLE_MODULE_TYPES.get(module["type"], module["type"])
        (directory / "modules.json").write_text(json.dumps(modules, indent=2))
        declare_without_pooler(
            directory / modules[0]["path"], model.query_encoder if side == "student" else model.document_encoder
        )
    except NotExpressibleError as error:
        logger.warning("%s holds no sentence-transformers model, only the query encoder's files: %s", directory, error)
        (model.query_tokenizer if side == "student" else model.tokenizer).save_pretrained(directory)


def _write_encoder_file(directory: Path, record: dict) -> None:
    (directory / ENCODER_FILE).write_text(json.dumps(record, indent=2))


def export_query_encoder(
    model: AsymmetricDualEncoder,
    directory: str | Path,
    backend: str = "onnx",
    quantize: str | None = None,
    side: str = "student",
) -> Path:
    """Write the query encoder of `side` to `directory` as `save_query_encoder` does, with its ONNX graph
    (`onnx/model.onnx`), plus int8 dynamic-quantized weights when `quantize="int8"` (`onnx/model_qint8.onnx`).
    `OnnxQueryEncoder(directory)` loads the last written (`file_name=` picks the other). Returns that file. The
    `static` and `model2vec` backends write a 0-layer student's token vectors (`save_query_encoder(static=backend)`)
    and return the folder."""
    check_export(backend, quantize, side)
    directory = Path(directory)
    if backend in STATIC_BACKENDS:
        save_query_encoder(model, directory, side, static=backend)  # a student it cannot serve is refused unwritten
        return directory
    save_query_encoder(model, directory, side)
    tokenizer = model.query_tokenizer if side == "student" else model.tokenizer
    (directory / "onnx").mkdir(parents=True, exist_ok=True)
    sample = tokenizer(["what is a dense retriever", "query"], padding=True, return_tensors="pt")
    graph = _QueryEmbedding(model, side)
    plain, target = directory / "onnx" / ONNX_FILES[None], directory / "onnx" / ONNX_FILES[quantize]
    _onnx_export(graph, (sample["input_ids"], sample["attention_mask"]), plain)
    if quantize == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # per-channel int8 weights of the matrix products; the embedding lookup stays float (it is no compute).
        # onnxruntime's hint to pre-process the graph first is for static quantization: silenced here.
        root, level = logging.getLogger(), logging.getLogger().level
        root.setLevel(logging.ERROR)
        try:
            quantize_dynamic(
                str(plain), str(target), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"]
            )
        finally:
            root.setLevel(level)
    record = json.loads((directory / ENCODER_FILE).read_text())
    _write_encoder_file(directory, {**record, "file_name": f"onnx/{target.name}", "quantize": quantize})
    return target


class OnnxQueryEncoder:
    """An exported query encoder run by ONNX Runtime: `encode_queries` as the torch student's (prompt first, batches
    of similar length), a `(n, d)` float tensor."""

    def __init__(self, directory: str | Path, file_name: str | None = None, num_threads: int | None = None):
        onnxruntime = _require_onnxruntime()
        directory = Path(directory)
        if not (directory / ENCODER_FILE).is_file():
            raise ValueError(f"{directory} is not an exported query encoder (no {ENCODER_FILE}); see export.py.")
        self.config = json.loads((directory / ENCODER_FILE).read_text())
        self.tokenizer = AutoTokenizer.from_pretrained(directory)
        options = onnxruntime.SessionOptions()
        # idle threads sleep instead of spinning, leaving the cores to whatever runs next (the tokenizer, or another
        # model measured beside this one)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        if num_threads:
            options.intra_op_num_threads = num_threads
        path = directory / (file_name or self.config["file_name"])
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.backend = next(name for name, quantize in SERVING_BACKENDS.items() if quantize == self.config["quantize"])

    def encode_queries(self, queries: list[str], batch_size: int = 32, show_progress_bar: bool = False):
        # Batches are assembled in numpy and the tensor made once: a torch op between two runs wakes torch's own
        # threads, which then compete with ONNX Runtime's for the cores (measured: research/notebook.md, serving).
        prompt, order = self.config["prompt"], sorted(range(len(queries)), key=lambda i: -len(queries[i]))
        out = np.empty((len(queries), self.config["embedding_dim"]), dtype=np.float32)
        for start in range(0, len(queries), batch_size):
            idx = order[start : start + batch_size]
            batch = self.tokenizer(
                [prompt + queries[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.config["max_length"],
                return_tensors="np",
            )
            inputs = {name: batch[name].astype(np.int64) for name in ("input_ids", "attention_mask")}
            out[idx] = self.session.run([OUTPUTS[1]], inputs)[0]
        return torch.from_numpy(out)
