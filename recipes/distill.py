"""Distill a small query encoder from a frozen teacher by embedding alignment (Wang & Lyu, 2023).

    python recipes/distill.py recipes/configs/minilm-2L.yaml --output_dir out/minilm-2L
    accelerate launch --config_file recipes/accelerate_configs/multi_gpu.yaml recipes/distill.py <config>

Any option of the config can be overridden on the command line (`--key value`); see `--help`. With `--push_to_hub
true` the saved student, its records and card are pushed once training has written them; a push that fails leaves
them in `--output_dir` and says how to retry it (`recipes/push.py`).
"""

import json
import logging
import sys
from contextlib import contextmanager
from pathlib import Path

from safetensors import SafetensorError

from hfdistill import config_from_teacher, from_teacher
from hfdistill.cli import input_errors, parse_args
from hfdistill.configuration_asymmetric import validate_layers
from hfdistill.data import alignment_datasets, load_queries, load_query_splits, training_texts
from hfdistill.hub import PushError, check_push_access, push_to_hub
from hfdistill.layer_selection import select_student_layers
from hfdistill.model_card import TRAINING_RECORD, write_model_card
from hfdistill.preflight import check_teacher_reachable, check_writable_dir, finished_run, resume_checkpoint
from hfdistill.provenance import environment
from hfdistill.trainer import EmbeddingAlignmentTrainer
from hfdistill.training_args import (
    EmbeddingAlignmentConfig,
    PublishCheckArguments,
    QueryDataArguments,
    StudentArguments,
)


def check_run(student_args, data_args, training_args, check: PublishCheckArguments | None = None):
    """What can be checked before the teacher loads: folders, the teacher's files, prompts and layers, Hub access for
    a push, then the query file (read in full). A problem ends the run with one line; nothing is written."""
    check_writable_dir(training_args.output_dir, "output_dir")
    check_writable_dir(data_args.embedding_cache_dir, "embedding_cache_dir")
    check_teacher_reachable(student_args.teacher, student_args.teacher_revision)
    config = config_from_teacher(student_args.teacher, "first", 0, **student_args.student_kwargs)
    num_layers = config.student_architecture.num_hidden_layers
    if student_args.layer_strategy == "auto" and student_args.student_model is not None:
        raise ValueError("student_layers auto ranks the teacher's layers: give the student model's layers instead.")
    if student_args.student_layers is not None:
        validate_layers(
            student_args.student_layers, num_layers, "the student model" if config.student_config else "the teacher"
        )
    elif not 0 <= student_args.num_student_layers <= num_layers:
        raise ValueError(f"num_student_layers={student_args.num_student_layers} must be between 0 and the teacher's "
                         f"{num_layers} layers.")  # fmt: skip
    if training_args.push_to_hub:
        check_push_access(training_args.hub_model_id, training_args.hub_token)
        if check is not None and check.check_queries is not None:  # the data of the check before the push, read now
            load_queries(check.check_queries, column=check.check_column)
            load_queries(check.check_documents, column=check.check_column)
    return load_query_splits(data_args, training_args.seed)


def training_record(student_args, data_args, training_args, trainer, counts, untrained, metrics, selection) -> dict:
    """What `distillation.json` records of a finished run: the data, the recipe, and held-out alignment."""
    return {
        "train_queries": data_args.train_queries,
        "num_train_queries": counts[0],
        "num_eval_queries": counts[1],
        "joined_query_fraction": data_args.joined_query_fraction,
        "joined_query_max": data_args.joined_query_max,
        "embedding_dtype": data_args.embedding_dtype,
        "loss": training_args.loss,
        "share_token_embeddings": student_args.share_token_embeddings,
        "student_query_prompt": student_args.student_query_prompt,
        "learning_rate": training_args.learning_rate,
        "adam_epsilon": training_args.adam_epsilon,
        "batch_size": training_args.per_device_train_batch_size * trainer.accelerator.num_processes,
        "train_sampling_strategy": training_args.train_sampling_strategy,
        "warmup_steps": training_args.warmup_steps,
        "num_train_epochs": training_args.num_train_epochs,
        "global_steps": trainer.state.global_step,
        "untrained_mean_cosine": untrained["untrained_mean_cosine"],
        "mean_cosine": metrics["eval_mean_cosine"],
        "layer_selection": selection,
        "environment": environment(),
    }


def main(
    student_args: StudentArguments,
    data_args: QueryDataArguments,
    training_args: EmbeddingAlignmentConfig,
    check: PublishCheckArguments | None = None,
):
    record = finished_run(training_args.output_dir) if training_args.resume_from_checkpoint else None
    if record is not None:
        print(f"{training_args.output_dir} holds a finished run ({record['global_steps']} steps): nothing to resume, "
              "it is left as it is. Start another --output_dir to train more.")  # fmt: skip
        return
    with input_errors():
        resume = resume_checkpoint(training_args.output_dir, training_args.resume_from_checkpoint)
        train_queries, eval_texts = check_run(student_args, data_args, training_args, check)
        train_texts = training_texts(data_args, train_queries, training_args.seed)
    layers, selection = student_args.student_layers, None  # [] is a 0-layer student
    if layers is None:
        layers = student_args.layer_strategy
    if layers == "auto":  # rank candidates on held-out queries, then short runs of the best
        selection = select_student_layers(student_args, data_args, training_args, train_texts, eval_texts)
        layers, selection["ranking"] = selection["selected"], selection["ranking"][:10]
        logging.getLogger(__name__).info("auto layer selection: %s in %.1f s", layers, selection["seconds"])
    model = from_teacher(student_args.teacher, layers, student_args.num_student_layers, **student_args.student_kwargs)
    model.to(training_args.device)  # the accelerator accelerate picked, for the teacher pass too
    datasets = alignment_datasets(  # every process embeds its share; plain queries are cached apart from additions
        model,
        [train_texts, eval_texts],
        data_args.embedding_cache_dir,
        data_args.teacher_batch_size,
        shared_prefixes=[len(train_queries), 0],
        dtype=data_args.embedding_dtype,
        precision="bfloat16" if training_args.bf16 else "float16" if training_args.fp16 else "float32",
    )
    counts = len(train_queries), len(eval_texts)
    del train_queries, train_texts, eval_texts  # tokenized in the datasets; millions of strings take gigabytes
    push = training_args.push_to_hub
    training_args.push_to_hub = False  # pushed once, below, when everything is saved
    trainer = EmbeddingAlignmentTrainer(model, training_args, train_dataset=datasets[0], eval_dataset=datasets[1])
    output_dir = training_args.output_dir
    with write_errors(output_dir):
        untrained = trainer.evaluate(metric_key_prefix="untrained")  # the truncated student before distillation
        trainer.log_metrics("untrained", untrained)
        trainer.save_metrics("untrained", untrained, combined=False)
        train_result = trainer.train(resume_from_checkpoint=resume)
        trainer.save_model()
        trainer.save_metrics("train", train_result.metrics)
        metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("alignment", metrics)
        if not trainer.is_world_process_zero():
            return
        record = training_record(
            student_args, data_args, training_args, trainer, counts, untrained, metrics, selection
        )
        Path(output_dir, TRAINING_RECORD).write_text(json.dumps(record, indent=2))
        write_model_card(model, output_dir, training_args.hub_model_id)
    if push:
        repo_id = training_args.hub_model_id
        try:
            url = push_to_hub(output_dir, repo_id, bool(training_args.hub_private_repo), training_args.hub_revision,
                              check, data_args.embedding_cache_dir, token=training_args.hub_token)  # fmt: skip
        except (PushError, ValueError) as error:
            sys.exit(f"error: {error} The student and its records are saved in {output_dir}; push them with "
                     f"`python recipes/push.py --model {output_dir} --repo_id {repo_id}`.")  # fmt: skip
        print(f"Pushed {output_dir} to {repo_id}: {url}")


@contextmanager
def write_errors(output_dir: str):
    """A write that fails in the output folder (a full disk) ends the run with one line: what failed, and that the
    last complete checkpoint resumes it."""
    try:
        yield
    except (OSError, SafetensorError) as error:
        sys.exit(f"error: writing into {output_dir} failed ({error}); free space there, then rerun with "
                 "--resume_from_checkpoint true to continue from its last complete checkpoint.")  # fmt: skip


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.INFO)
    with input_errors():
        arguments = parse_args((StudentArguments, QueryDataArguments, EmbeddingAlignmentConfig, PublishCheckArguments))
    main(*arguments)
