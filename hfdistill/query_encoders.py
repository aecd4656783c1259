"""Query encoders that stand in for a student's PyTorch one against the teacher's document embeddings: the student's
ONNX or static export (`export.py`), or any sentence-transformers or model2vec model whose embeddings live in the
teacher's space, such as a training-free baseline (model2vec's static vectors of the teacher:
research/model2vec_baseline.py)."""

import json
from pathlib import Path

import torch

from .export import OnnxQueryEncoder
from .run_files import ENCODER_FILE
from .static import MODEL2VEC_HELP


class SentenceTransformerQueryEncoder:
    """A sentence-transformers model's `encode_query` as a query encoder: a `(n, d)` float tensor.

    Args:
        name_or_path (`str`):
            A sentence-transformers model folder or Hub id.
        device (`str`, *optional*, defaults to `"cpu"`):
            Where it runs.
    """

    backend = "sentence-transformers"

    def __init__(self, name_or_path: str, device: str = "cpu"):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(name_or_path, device=device)
        self.config = {"backend": self.backend, "embedding_dim": self.model.get_embedding_dimension()}

    def encode_queries(self, queries: list[str], batch_size: int = 32, show_progress_bar: bool = False):
        embeddings = self.model.encode_query(
            queries, batch_size=batch_size, show_progress_bar=show_progress_bar, convert_to_tensor=True
        )
        return embeddings.float().cpu()


class Model2VecQueryEncoder:
    """A model2vec `StaticModel`'s `encode` as a query encoder (a lookup and a mean, no model code around them): a
    `(n, d)` float tensor.

    Args:
        path (`str`):
            A model2vec model folder (`recipes/export.py --backend model2vec` writes one).
    """

    backend = "model2vec"

    def __init__(self, path: str):
        try:
            from model2vec import StaticModel
        except ImportError:
            raise ImportError(f"{path} is a model2vec model, which needs model2vec: {MODEL2VEC_HELP}.") from None
        self.model = StaticModel.from_pretrained(path)
        self.config = {"backend": self.backend, "embedding_dim": self.model.dim}

    def encode_queries(self, queries: list[str], batch_size: int = 32, show_progress_bar: bool = False):
        embeddings = self.model.encode(queries, batch_size=batch_size, show_progress_bar=show_progress_bar)
        return torch.from_numpy(embeddings).float()


def is_model2vec_folder(path: Path) -> bool:
    """Whether `path` holds a model2vec model (its config says so)."""
    config = path / "config.json"
    return config.is_file() and json.loads(config.read_text()).get("model_type") == "model2vec"


def load_query_encoder(name_or_path: str, num_threads: int | None = None, device: str = "cpu"):
    """The student's exported query encoder (a folder written by `recipes/export.py`: ONNX, run by ONNX Runtime on
    the CPU with `num_threads`, or model2vec), any model2vec model folder, else a sentence-transformers model (folder
    or Hub id) on `device`, where the student runs."""
    path = Path(name_or_path)
    if (path / ENCODER_FILE).is_file() and json.loads((path / ENCODER_FILE).read_text()).get("file_name"):
        return OnnxQueryEncoder(path, num_threads=num_threads)
    if is_model2vec_folder(path):
        return Model2VecQueryEncoder(name_or_path)
    if path.is_dir() and not (path / "modules.json").is_file():
        raise ValueError(
            f"{name_or_path} is neither an exported query encoder (no {ENCODER_FILE}: see recipes/export.py) nor a "
            "sentence-transformers model (no modules.json)."
        )
    return SentenceTransformerQueryEncoder(name_or_path, device)
