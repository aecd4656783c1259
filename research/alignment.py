"""Where a student departs from its teacher: per-query cosine of their embeddings, grouped by query length and by how
often the query's rarest token occurs in the training queries.

Retrieval losses gather on queries unlike the training ones. Alignment by length (or rarity) on held-out training
queries shows what length (or rare words) alone costs; the same table on another task's queries, at equal length or
rarity, shows what the domain costs.
"""

from collections import Counter
from pathlib import Path

import torch
from torch import nn

from hfdistill import AsymmetricDualEncoder
from hfdistill.teacher_pass import cached_teacher_embeddings

LENGTH_BINS = (8, 12, 16, 24, 32)  # token-count edges: [0, 8), [8, 12), ..., [32, max_length]
RARITY_BINS = (5, 20, 100, 1000)  # edges of how often a query's rarest token occurs in the training queries


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


def _binned(cosines: torch.Tensor, values: torch.Tensor, edges: tuple[int, ...], unit: str) -> list[dict]:
    """Mean cosine of the queries whose value falls in each [low, high) bin of `edges` (the last bin open-ended)."""
    bounds, rows = [0, *edges, None], []
    for low, high in zip(bounds, bounds[1:]):
        picked = (values >= low) & (values < high if high is not None else True)
        if picked.any():
            label = f"{low}-{high - 1}" if high is not None else f"{low}+"
            rows.append({unit: label, "queries": int(picked.sum()), "mean_cosine": float(cosines[picked].mean())})
    return rows


def alignment_by_length(
    model: AsymmetricDualEncoder,
    queries: list[str],
    cache_dir: str | Path,
    bins: tuple[int, ...] = LENGTH_BINS,
    batch_size: int = 64,
    train_queries: list[str] | None = None,
    rarity_bins: tuple[int, ...] = RARITY_BINS,
) -> dict:
    """Mean cosine over `queries` and per token-length bin (tokens as the student sees them, special ones included).

    Given the `train_queries`, also per bin of how often the query's rarest token occurs in them: tokens the student
    saw rarely in training show whether the vocabulary, rather than the length, costs alignment.
    """
    if not queries:
        raise ValueError("alignment_by_length needs at least one query.")
    cosines = query_cosines(model, queries, cache_dir, batch_size)
    ids = model.tokenizer(queries, truncation=True, max_length=model.config.max_length).input_ids
    report = {
        "queries": len(queries),
        "mean_cosine": float(cosines.mean()),
        "by_length": _binned(cosines, torch.tensor([len(row) for row in ids]), bins, "tokens"),
    }
    if train_queries is not None:
        special = set(model.tokenizer.all_special_ids)
        seen = Counter(i for row in model.tokenizer(train_queries, add_special_tokens=False).input_ids for i in row)
        rarest = torch.tensor([min((seen[i] for i in row if i not in special), default=0) for row in ids])
        report["by_rarity"] = _binned(cosines, rarest, rarity_bins, "rarest_token_count")
    return report
