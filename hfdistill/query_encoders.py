"""Query encoders that stand in for a student's PyTorch one against the teacher's document embeddings: the student's
ONNX export (`export.py`), or any sentence-transformers model whose embeddings live in the teacher's space, such as a
training-free baseline (model2vec's static vectors of the teacher: research/model2vec_baseline.py)."""

import json
from pathlib import Path

from .export import OnnxQueryEncoder
from .run_files import ENCODER_FILE


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


def load_query_encoder(name_or_path: str, num_threads: int | None = None, device: str = "cpu"):
    """The student's exported query encoder (a folder written by `recipes/export.py`, run by ONNX Runtime on the CPU
    with `num_threads`), else a sentence-transformers model (folder or Hub id) on `device`, where the student runs."""
    path = Path(name_or_path)
    if (path / ENCODER_FILE).is_file() and json.loads((path / ENCODER_FILE).read_text()).get("file_name"):
        return OnnxQueryEncoder(path, num_threads=num_threads)
    if path.is_dir() and not (path / "modules.json").is_file():
        raise ValueError(
            f"{name_or_path} is neither an exported query encoder (no {ENCODER_FILE}: see recipes/export.py) nor a "
            "sentence-transformers model (no modules.json)."
        )
    return SentenceTransformerQueryEncoder(name_or_path, device)
