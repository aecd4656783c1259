"""Where a student departs from its teacher: per-query cosine of their embeddings, grouped by query length.

Retrieval losses gather on queries unlike the training ones. Alignment by length on held-out training queries shows
what length alone costs; the same table on another task's queries, at equal length, shows what the domain costs.
"""

from pathlib import Path

import torch
from torch import nn

from .data import cached_teacher_embeddings
from .modeling_asymmetric import AsymmetricDualEncoder

LENGTH_BINS = (8, 12, 16, 24, 32)  # token-count edges: [0, 8), [8, 12), ..., [32, max_length]


def join_consecutive(texts: list[str], size: int) -> list[str]:
    """Each run of `size` consecutive texts joined by spaces (a short tail is dropped): long inputs made of real
    queries, to measure alignment beyond the length of any training query without an evaluation set."""
    if size < 1:
        raise ValueError(f"join must be >= 1, got {size}.")
    if size > len(texts):
        raise ValueError(f"join={size} is more than the {len(texts)} queries given: no text can be made.")
    return [" ".join(texts[start : start + size]) for start in range(0, len(texts) - size + 1, size)]


@torch.inference_mode()
def query_cosines(
    model: AsymmetricDualEncoder, queries: list[str], cache_dir: str | Path, batch_size: int = 64
) -> torch.Tensor:
    """Cosine between the student's and the teacher's embedding of each query (teacher side cached)."""
    teacher = cached_teacher_embeddings(model, queries, cache_dir, batch_size)
    return nn.functional.cosine_similarity(model.encode_queries(queries, batch_size), teacher, dim=-1)


def alignment_by_length(
    model: AsymmetricDualEncoder,
    queries: list[str],
    cache_dir: str | Path,
    bins: tuple[int, ...] = LENGTH_BINS,
    batch_size: int = 64,
) -> dict:
    """Mean cosine over `queries` and per token-length bin (tokens as the student sees them, special ones included)."""
    if not queries:
        raise ValueError("alignment_by_length needs at least one query.")
    cosines = query_cosines(model, queries, cache_dir, batch_size)
    lengths = torch.tensor(
        [len(ids) for ids in model.tokenizer(queries, truncation=True, max_length=model.config.max_length).input_ids]
    )
    edges = [0, *bins, None]
    rows = []
    for low, high in zip(edges, edges[1:]):
        picked = (lengths >= low) & (lengths < high if high is not None else True)
        if picked.any():
            tokens = f"{low}-{high - 1}" if high is not None else f"{low}+"
            rows.append({"tokens": tokens, "queries": int(picked.sum()), "mean_cosine": float(cosines[picked].mean())})
    return {"queries": len(queries), "mean_cosine": float(cosines.mean()), "by_length": rows}
