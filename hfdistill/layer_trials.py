"""Second stage of automatic layer selection: a short training run of each candidate the proxy shortlists.

Untrained proxies measure where a candidate starts, not how far training takes it. A few dozen steps of the run's
own recipe measure that directly, at the cost of training a handful of candidates instead of scoring all of them.
"""

import dataclasses
import tempfile
import time
from pathlib import Path

from .data import alignment_datasets
from .layer_selection import auto_select_layers
from .modeling_asymmetric import AsymmetricDualEncoder
from .trainer import EmbeddingAlignmentTrainer
from .training_args import EmbeddingAlignmentConfig, QueryDataArguments, StudentArguments


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
    model = AsymmetricDualEncoder.from_teacher(teacher, shortlist[0], **student_kwargs)
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
                model = AsymmetricDualEncoder.from_teacher(teacher, layers, **student_kwargs)
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
    """The `auto` layer choice, as `distillation.json` records it: the proxy's ranking of the candidates, then, when
    `selection_training_steps` > 0, short training runs of its top `selection_shortlist`, the best of which wins."""
    start = time.perf_counter()
    best, ranking, _ = auto_select_layers(
        student_args.teacher,
        eval_texts,
        student_args.num_student_layers,
        data_args.embedding_cache_dir,
        max_candidates,
        proxy=student_args.selection_proxy,
        candidates=candidates,
        **student_args.teacher_kwargs,
    )
    record = {"selected": best, "proxy": student_args.selection_proxy, "ranking": ranking}
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
