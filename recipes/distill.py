"""Distill a small query encoder from a frozen teacher by embedding alignment (Wang & Lyu, 2023).

    python recipes/distill.py recipes/configs/minilm-2L.yaml --output_dir out/minilm-2L
    accelerate launch --multi_gpu recipes/distill.py <config>  # one process per GPU of the machine

Any option of the config can be overridden on the command line (`--key value`); see `--help`. With `--push_to_hub
true` the saved student, its records and card are pushed once training has written them; a push that fails leaves
them in `--output_dir` and says how to retry it (`recipes/push.py`).
"""

import json
import logging
import sys
from contextlib import ExitStack
from pathlib import Path

from accelerate import PartialState
from transformers import AutoTokenizer

from hfdistill import from_teacher
from hfdistill.cli import input_errors, parse_args, setup_logging
from hfdistill.data import alignment_datasets, training_texts
from hfdistill.documents import index_texts
from hfdistill.hub import PushError, push_to_hub
from hfdistill.layer_selection import select_student_layers
from hfdistill.model_card import write_model_card
from hfdistill.preflight import (
    check_resume_settings,
    check_run,
    finished_run,
    move_aside,
    resume_checkpoint,
    run_lock,
    run_settings,
    write_errors,
    write_run_settings,
)
from hfdistill.provenance import training_record
from hfdistill.run_files import TRAINING_RECORD
from hfdistill.trainer import EmbeddingAlignmentTrainer
from hfdistill.training_args import (
    EmbeddingAlignmentConfig,
    PublishCheckArguments,
    QueryDataArguments,
    StudentArguments,
)


def main(
    student_args: StudentArguments,
    data_args: QueryDataArguments,
    training_args: EmbeddingAlignmentConfig,
    check: PublishCheckArguments | None = None,
    build=from_teacher,
):
    """Check the run, hold its folder, then train: `build(teacher, layers, num_layers, **kwargs)` makes the student
    (`from_teacher`; research scripts pass their own initialisation)."""
    record = finished_run(training_args.output_dir) if training_args.resume_from_checkpoint else None
    if record is not None:
        print(
            f"{training_args.output_dir} holds a finished run ({record['global_steps']} steps): nothing to resume, "
            "it is left as it is. Start another --output_dir to train more."
        )
        return
    output_dir, state = training_args.output_dir, PartialState()
    with input_errors():
        resume = resume_checkpoint(output_dir, training_args.resume_from_checkpoint)
        settings = run_settings(student_args, data_args, training_args)
        if resume:
            check_resume_settings(output_dir, settings)
        train_queries, eval_texts, documents = check_run(student_args, data_args, training_args, check)
        train_texts = training_texts(data_args, train_queries, training_args.seed)
        if documents:  # cut with the tokenizer the student reads them with, before any model loads
            tokenizer = AutoTokenizer.from_pretrained(
                student_args.student_model or student_args.teacher,
                revision=None if student_args.student_model else student_args.teacher_revision,
                trust_remote_code=student_args.trust_remote_code,
            )
            train_texts += index_texts(data_args, documents, tokenizer, len(train_queries), training_args.seed)
    counts = {
        "num_train_queries": len(train_queries),
        "num_eval_queries": len(eval_texts),
        "num_documents": len(documents or []),
        "num_document_texts": len(train_texts)
        - len(train_queries)
        - round(len(train_queries) * data_args.joined_query_fraction),
    }
    del train_queries, documents  # millions of strings take gigabytes
    with ExitStack() as held:
        if state.is_main_process:
            with input_errors():  # a folder in use by another run, or one to start over (moved aside, whole)
                aside = move_aside(output_dir) if training_args.overwrite_output_dir and not resume else None
                held.enter_context(run_lock(output_dir))
                write_run_settings(output_dir, settings)
            if aside is not None:
                print(f"--overwrite_output_dir: the run {output_dir} held is kept as {aside}; this one starts over.")
        state.wait_for_everyone()
        train(student_args, data_args, training_args, check, resume, train_texts, eval_texts, counts, build)


def train(student_args, data_args, training_args, check, resume, train_texts, eval_texts, counts: dict, build):
    """Build the student, run the teacher pass, train, save, record and push: the run proper, in a folder it holds."""
    layers, selection = student_args.student_layers, None  # [] is a 0-layer student
    if layers is None:
        layers = student_args.layer_strategy
    if layers == "auto":  # rank candidates on held-out queries, then short runs of the best
        selection = select_student_layers(student_args, data_args, training_args, train_texts, eval_texts)
        layers, selection["ranking"] = selection["selected"], selection["ranking"][:10]
        logging.getLogger(__name__).info("auto layer selection: %s in %.1f s", layers, selection["seconds"])
    model = build(student_args.teacher, layers, student_args.num_student_layers, **student_args.student_kwargs)
    model.to(training_args.device)  # the accelerator accelerate picked, for the teacher pass too
    datasets = alignment_datasets(  # every process embeds its share; plain queries are cached apart from additions
        model,
        [train_texts, eval_texts],
        data_args.embedding_cache_dir,
        data_args.teacher_batch_size,
        shared_prefixes=[counts["num_train_queries"], 0],
        dtype=data_args.embedding_dtype,
        precision="bfloat16" if training_args.bf16 else "float16" if training_args.fp16 else "float32",
    )
    del train_texts, eval_texts  # tokenized in the datasets
    push = training_args.push_to_hub
    training_args.push_to_hub = False  # pushed once, below, when everything is saved
    trainer = EmbeddingAlignmentTrainer(model, training_args, train_dataset=datasets[0], eval_dataset=datasets[1])
    output_dir = training_args.output_dir
    with write_errors(output_dir):
        untrained = trainer.evaluate(metric_key_prefix="untrained")  # the truncated student before distillation
        trainer.log_metrics("untrained", untrained)
        trainer.save_metrics("untrained", untrained, combined=False)
        train_result = trainer.train(resume_from_checkpoint=resume)
        if trainer.state.global_step == 0:  # never saved as a finished student
            sys.exit(
                f"error: the run trained no step ({len(datasets[0])} examples, num_train_epochs "
                f"{training_args.num_train_epochs}, max_steps {training_args.max_steps}); nothing was saved as "
                "a student. Train for at least one step."
            )
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
    if not push:
        print(
            f"Next, score it: python recipes/evaluate.py --model {output_dir} --tasks <mteb tasks or BEIR folders> "
            f"--output_dir {output_dir}"
        )
        return
    repo_id = training_args.hub_model_id
    try:
        url = push_to_hub(
            output_dir,
            repo_id,
            bool(training_args.hub_private_repo),
            training_args.hub_revision,
            check,
            data_args.embedding_cache_dir,
            token=training_args.hub_token,
        )
    except (PushError, ValueError) as error:
        sys.exit(
            f"error: {error} The student and its records are saved in {output_dir}; push them with "
            f"`python recipes/push.py --model {output_dir} --repo_id {repo_id}`."
        )
    print(f"Pushed {output_dir} to {repo_id}: {url}")


def run(argv: list[str] | None = None, build=from_teacher) -> None:
    """The command line: `[config.yaml] [--key value ...]` (`sys.argv` by default), parsed, then `main`."""
    with input_errors():
        arguments = parse_args(
            (StudentArguments, QueryDataArguments, EmbeddingAlignmentConfig, PublishCheckArguments), argv
        )
    setup_logging("info" if arguments[2].log_level == "passive" else arguments[2].log_level)
    main(*arguments, build=build)
    PartialState().destroy_process_group()  # a multi-process run leaves its group: one left to the exit can abort it


if __name__ == "__main__":
    run()
