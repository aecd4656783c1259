"""Automatic layer selection: rank candidate layer sets by a cheap proxy instead of training each one.

The proxy is the alignment of each *untrained* truncated student with the teacher: the mean cosine between the
student's and the teacher's embeddings of held-out queries. Candidates share the teacher's layer modules (no copies),
so scoring one costs a k-layer forward pass over the queries.
"""

import itertools
import random
import time
from pathlib import Path

import torch
from torch import nn

from .configuration_asymmetric import LAYER_STRATEGIES, select_layers
from .data import cached_teacher_embeddings
from .modeling_asymmetric import AsymmetricDualEncoder


def candidate_layer_sets(num_teacher_layers: int, k: int, max_candidates: int = 64, seed: int = 0) -> list[list[int]]:
    """All k-subsets of the teacher's layers, or the named strategies plus a seeded sample when there are too many."""
    if not 1 <= k <= num_teacher_layers:
        raise ValueError(f"num_student_layers={k} must be between 1 and the teacher's {num_teacher_layers} layers.")
    combinations = [list(c) for c in itertools.combinations(range(num_teacher_layers), k)]
    if len(combinations) <= max_candidates:
        return combinations
    named = {tuple(select_layers(strategy, k, num_teacher_layers)) for strategy in LAYER_STRATEGIES}
    rest = [c for c in combinations if tuple(c) not in named]
    sample = random.Random(seed).sample(rest, max(0, max_candidates - len(named)))
    return sorted([list(c) for c in named] + sample)


@torch.inference_mode()
def rank_layer_sets(
    model: AsymmetricDualEncoder,
    queries: list[str],
    k: int,
    cache_dir: str | Path,
    max_candidates: int = 64,
    batch_size: int = 64,
) -> list[dict]:
    """Candidates sorted best first, each `{"layers", "mean_cosine"}`; `model` must hold the full teacher."""
    if not queries:
        raise ValueError("rank_layer_sets needs held-out queries to score candidates on.")
    teacher_layers = model.document_encoder.encoder.layer
    targets = nn.functional.normalize(cached_teacher_embeddings(model, queries, cache_dir, batch_size), dim=-1)
    original = model.query_encoder.encoder.layer
    ranked = []
    try:
        for layers in candidate_layer_sets(len(teacher_layers), k, max_candidates):
            model.query_encoder.encoder.layer = nn.ModuleList([teacher_layers[i] for i in layers])
            student = nn.functional.normalize(model.encode_queries(queries, batch_size), dim=-1)
            ranked.append({"layers": layers, "mean_cosine": float((student * targets).sum(-1).mean())})
    finally:
        model.query_encoder.encoder.layer = original
    return sorted(ranked, key=lambda c: -c["mean_cosine"])


def auto_select_layers(
    teacher: str, queries: list[str], k: int, cache_dir: str | Path, max_candidates: int = 64, **teacher_kwargs
) -> tuple[list[int], list[dict], float]:
    """Best k-layer set for `teacher` by the proxy; also returns the full ranking and the seconds it took."""
    start = time.perf_counter()
    full = AsymmetricDualEncoder.from_teacher(teacher, "first", 1, **teacher_kwargs)
    ranking = rank_layer_sets(full, queries, k, cache_dir, max_candidates)
    return ranking[0]["layers"], ranking, time.perf_counter() - start
