"""Automatic layer selection (`student_layers: auto`): which teacher layers a k-layer student should keep.

First every candidate layer set is scored untrained: its truncated student embeds held-out queries and the score is
the mean cosine to the teacher's embeddings of them (candidates share the teacher's layer modules, so scoring one
costs a k-layer forward pass). That rules out bad sets for free, but favours sets that end in adjacent top layers,
whose output is closest before any training. So the best few then train a few dozen steps of the run's own recipe
each (`train_shortlist`), and the best held-out cosine after them wins: how a set trains is what no untrained score
sees.
"""

import dataclasses
import itertools
import random
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from .configuration_asymmetric import LAYER_STRATEGIES, select_layers
from .data import alignment_datasets
from .modeling_asymmetric import AsymmetricDualEncoder, keep_layers, layer_stack
from .teacher import from_teacher
from .teacher_pass import cached_teacher_embeddings
from .trainer import EmbeddingAlignmentTrainer
from .training_args import EmbeddingAlignmentConfig, QueryDataArguments, StudentArguments


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


@torch.inference_mode()
def rank_layer_sets(
    model: AsymmetricDualEncoder,
    queries: list[str],
    k: int,
    cache_dir: str | Path,
    max_candidates: int = 64,
    batch_size: int = 64,
    candidates: list[list[int]] | None = None,
) -> list[dict]:
    """Candidates sorted best first by their untrained cosine, each `{"layers", "cosine"}`: all k-layer sets, or the
    given `candidates` (of any size; `k` is then unused). `model` must hold the full teacher."""
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
            ranked.append({"layers": layers, "cosine": mean_cosine(student, targets)})
    finally:  # the student's own layers back, as the teacher's kept layers they stand for
        keep_layers(model.query_encoder, dict(zip(student_layers, original)), student_layers, teacher_config)
    return sorted(ranked, key=lambda c: -c["cosine"])


def auto_select_layers(
    teacher: str,
    queries: list[str],
    k: int,
    cache_dir: str | Path,
    max_candidates: int = 64,
    candidates: list[list[int]] | None = None,
    **teacher_kwargs,
) -> tuple[list[int], list[dict], float]:
    """Best k-layer set for `teacher` by untrained cosine; also returns the full ranking and the seconds it took."""
    start = time.perf_counter()
    full = from_teacher(teacher, "first", 1, **teacher_kwargs)
    ranking = rank_layer_sets(full, queries, k, cache_dir, max_candidates, candidates=candidates)
    return ranking[0]["layers"], ranking, time.perf_counter() - start


def train_shortlist(
    teacher: str,
    shortlist: list[list[int]],
    train_texts: list[str],
    eval_texts: list[str],
    args: EmbeddingAlignmentConfig,
    steps: int,
    cache_dir: str | Path,
    teacher_batch_size: int = 64,
    **student_kwargs,
) -> list[dict]:
    """`shortlist` sorted best first by held-out cosine after `steps` steps of `args`' recipe, each
    `{"layers", "trained_cosine", "seconds"}`.

    Every candidate trains on the same first `steps` batches' worth of `train_texts`, with the same seed, and is scored
    on `eval_texts`; nothing is saved, logged or pushed. Loss, learning rate and batch are the recipe's; warmup is 10%
    of the trial, since a recipe's warmup in steps (the paper's 1,000) would outlast it.
    """
    if steps < 1 or not shortlist:
        raise ValueError(f"train_shortlist needs steps >= 1 and candidates, got {steps} steps and {shortlist}.")
    examples = steps * args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    model = from_teacher(teacher, shortlist[0], **student_kwargs)
    datasets = alignment_datasets(model, [train_texts[:examples], eval_texts], cache_dir, teacher_batch_size)
    ranked = []
    with tempfile.TemporaryDirectory() as scratch:
        trial_args = dataclasses.replace(
            args,
            output_dir=scratch,
            max_steps=steps,
            warmup_steps=0.1,
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            report_to=[],
            push_to_hub=False,
            load_best_model_at_end=False,
            retrieval_eval_dir=None,
            resume_from_checkpoint=None,
        )
        for index, layers in enumerate(shortlist):
            start = time.perf_counter()
            if index:  # the first candidate's student was built above, to embed the texts
                model = from_teacher(teacher, layers, **student_kwargs)
            trainer = EmbeddingAlignmentTrainer(model, trial_args, train_dataset=datasets[0], eval_dataset=datasets[1])
            trainer.train()
            cosine = trainer.evaluate()["eval_mean_cosine"]
            ranked.append(
                {"layers": layers, "trained_cosine": cosine, "seconds": round(time.perf_counter() - start, 1)}
            )
    return sorted(ranked, key=lambda c: -c["trained_cosine"])


def select_student_layers(
    student_args: StudentArguments,
    data_args: QueryDataArguments,
    training_args: EmbeddingAlignmentConfig,
    train_texts: list[str],
    eval_texts: list[str],
    max_candidates: int = 64,
    candidates: list[list[int]] | None = None,
) -> dict:
    """The `auto` layer choice, as `distillation.json` records it: the untrained ranking of the candidates, then,
    when `selection_training_steps` > 0, short training runs of its top `selection_shortlist`, the best of which
    wins."""
    start = time.perf_counter()
    best, ranking, _ = auto_select_layers(
        student_args.teacher,
        eval_texts,
        student_args.num_student_layers,
        data_args.embedding_cache_dir,
        max_candidates,
        candidates=candidates,
        student_query_prompt=student_args.student_query_prompt,  # candidates read queries as the student will
        **student_args.teacher_kwargs,
    )
    record = {"selected": best, "ranking": ranking}
    if student_args.selection_training_steps:
        trials = train_shortlist(
            student_args.teacher,
            [candidate["layers"] for candidate in ranking[: student_args.selection_shortlist]],
            train_texts,
            eval_texts,
            training_args,
            student_args.selection_training_steps,
            data_args.embedding_cache_dir,
            data_args.teacher_batch_size,
            **student_args.student_kwargs,
        )
        record.update(
            selected=trials[0]["layers"], training_steps=student_args.selection_training_steps, trials=trials
        )
    record["seconds"] = round(time.perf_counter() - start, 1)
    return record
