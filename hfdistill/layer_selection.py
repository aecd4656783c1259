"""Automatic layer selection: rank candidate layer sets by a cheap proxy instead of training each one.

Each *untrained* truncated student embeds held-out queries and is scored against the teacher's embeddings of them.
Candidates share the teacher's layer modules (no copies), so scoring one costs a k-layer forward pass. Proxies:

- `cosine` (default): mean cosine between student and teacher embeddings. It asks for the final vectors before any
  training, so it favours sets that end in adjacent top layers (`[10, 11]` over `[0, 11]` of 12).
- `neighbours`: retrieval agreement. The teacher's embeddings of the held-out queries act as a small index;
  the score is the share of each query's 10 nearest neighbours in it (itself excluded) that the student's embedding
  also ranks in its top 10, as the student will be used: its query against the teacher's documents.
- `cka`: linear CKA, the similarity of the two embedding geometries up to rotation and scale.

The last two tend to favour bottom layers, whose pooled output is a lexical embedding, over the top layer that
training makes the most of; `layer_trials.py` adds short training runs of the shortlist, which settle it.
"""

import itertools
import random
import time
from pathlib import Path

import torch
from torch import nn

from .configuration_asymmetric import LAYER_STRATEGIES, select_layers
from .embedding_cache import cached_teacher_embeddings
from .modeling_asymmetric import AsymmetricDualEncoder, keep_layers, layer_stack


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


def mean_cosine(student: torch.Tensor, teacher: torch.Tensor) -> float:
    """Mean cosine between rows of two `(queries, dim)` matrices of unit vectors."""
    return float((student * teacher).sum(-1).mean())


def linear_cka(student: torch.Tensor, teacher: torch.Tensor) -> float:
    """Linear centered kernel alignment (Kornblith et al., 2019): 1 for the same geometry up to rotation and scale."""
    student, teacher = student.double() - student.double().mean(0), teacher.double() - teacher.double().mean(0)
    cross = (student.T @ teacher).norm() ** 2
    return float(cross / ((student.T @ student).norm() * (teacher.T @ teacher).norm()))


def neighbour_overlap(student: torch.Tensor, teacher: torch.Tensor, k: int = 10, chunk: int = 1024) -> float:
    """Share of each query's k nearest neighbours among the teacher embeddings of the others that the student's
    embedding of it also ranks in its top k."""
    count = len(teacher)
    if count <= k:
        raise ValueError(f"neighbour_overlap needs more than k={k} queries, got {count}.")
    shared = 0
    for start in range(0, count, chunk):
        rows = torch.arange(start, min(start + chunk, count))
        scores = torch.stack([student[rows] @ teacher.T, teacher[rows] @ teacher.T])
        scores[:, torch.arange(len(rows)), rows] = -torch.inf  # a query is not its own neighbour
        found, wanted = scores.topk(k, dim=-1).indices
        shared += int((found.unsqueeze(-1) == wanted.unsqueeze(-2)).any(-1).sum())
    return shared / (count * k)


PROXIES = {"cosine": mean_cosine, "neighbours": neighbour_overlap, "cka": linear_cka}


@torch.inference_mode()
def rank_layer_sets(
    model: AsymmetricDualEncoder,
    queries: list[str],
    k: int,
    cache_dir: str | Path,
    max_candidates: int = 64,
    batch_size: int = 64,
    proxy: str = "cosine",
    candidates: list[list[int]] | None = None,
) -> list[dict]:
    """Candidates sorted best first by `proxy`, each `{"layers", <every proxy's score>}`: all k-layer sets, or the
    given `candidates` (of any size; `k` is then unused). `model` must hold the full teacher."""
    if proxy not in PROXIES:
        raise ValueError(f"Unknown layer-selection proxy {proxy!r}; choose one of {tuple(PROXIES)}.")
    if not queries:
        raise ValueError("rank_layer_sets needs held-out queries to score candidates on.")
    teacher_layers = layer_stack(model.document_encoder)
    for layers in candidates or []:
        if not layers or not all(0 <= index < len(teacher_layers) for index in layers):
            raise ValueError(f"Candidate {layers} must hold layer indices of the teacher's {len(teacher_layers)}.")
    targets = nn.functional.normalize(cached_teacher_embeddings(model, queries, cache_dir, batch_size), dim=-1)
    teacher_config, student_layers = model.config.teacher_config, model.config.student_layers
    original = layer_stack(model.query_encoder)
    ranked = []
    try:
        for layers in candidates or candidate_layer_sets(len(teacher_layers), k, max_candidates):
            keep_layers(model.query_encoder, teacher_layers, layers, teacher_config)
            student = nn.functional.normalize(model.encode_queries(queries, batch_size), dim=-1)
            ranked.append({"layers": layers, **{name: score(student, targets) for name, score in PROXIES.items()}})
    finally:  # the student's own layers back, as the teacher's kept layers they stand for
        keep_layers(model.query_encoder, dict(zip(student_layers, original)), student_layers, teacher_config)
    return sorted(ranked, key=lambda c: -c[proxy])


def auto_select_layers(
    teacher: str,
    queries: list[str],
    k: int,
    cache_dir: str | Path,
    max_candidates: int = 64,
    proxy: str = "cosine",
    candidates: list[list[int]] | None = None,
    **teacher_kwargs,
) -> tuple[list[int], list[dict], float]:
    """Best k-layer set for `teacher` by `proxy`; also returns the full ranking and the seconds it took."""
    start = time.perf_counter()
    full = AsymmetricDualEncoder.from_teacher(teacher, "first", 1, **teacher_kwargs)
    ranking = rank_layer_sets(full, queries, k, cache_dir, max_candidates, proxy=proxy, candidates=candidates)
    return ranking[0]["layers"], ranking, time.perf_counter() - start
