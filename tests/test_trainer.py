import pytest
import torch

from hfdistill import AsymmetricDualEncoder, from_teacher
from hfdistill.data import QueryAlignmentDataset
from hfdistill.modeling_asymmetric import layer_stack
from hfdistill.trainer import EmbeddingAlignmentTrainer
from hfdistill.training_args import EmbeddingAlignmentConfig


def make_args(tmp_path, **overrides) -> EmbeddingAlignmentConfig:
    defaults = dict(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        learning_rate=5e-3,
        warmup_steps=0,
        max_steps=12,
        logging_steps=4,
        eval_strategy="steps",
        eval_steps=6,
        save_steps=6,
        report_to="none",
        use_cpu=True,
        seed=0,
    )
    return EmbeddingAlignmentConfig(**{**defaults, **overrides})


def make_datasets(model, queries):
    """Held-out split of the queries, after knocking the student off its (already close) teacher initialisation."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in layer_stack(model.query_encoder).parameters():
            p.add_(torch.randn_like(p) * 0.3)
    targets = model.encode_teacher_queries(queries)
    return (
        QueryAlignmentDataset(queries[:240], targets[:240], model),
        QueryAlignmentDataset(queries[240:], targets[240:], model),
    )


@pytest.mark.parametrize("loss", ["mse", "cosine"])
def test_training_aligns_student_and_leaves_teacher_untouched(tiny_student, queries, tmp_path, loss):
    train, held_out = make_datasets(tiny_student, queries)
    teacher_before = {k: v.clone() for k, v in tiny_student.document_encoder.state_dict().items()}
    trainer = EmbeddingAlignmentTrainer(
        tiny_student, make_args(tmp_path, loss=loss), train_dataset=train, eval_dataset=held_out
    )
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    assert after["eval_loss"] < before["eval_loss"]
    assert after["eval_mean_cosine"] > before["eval_mean_cosine"]
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 3 and losses[-1] < losses[0]
    for key, value in tiny_student.document_encoder.state_dict().items():
        assert torch.equal(value, teacher_before[key]), key
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in tiny_student.query_encoder.parameters()}
    trainer.save_model()
    reloaded = AsymmetricDualEncoder.from_pretrained(tmp_path / "run")
    torch.testing.assert_close(reloaded.encode_queries(queries[:5]), tiny_student.encode_queries(queries[:5]))
    assert (tmp_path / "run" / "checkpoint-12" / "modeling_asymmetric.py").is_file()


def test_short_distillation_lowers_the_loss_for_every_family(family_teacher, queries, tmp_path):
    name, teacher = family_teacher
    prompt_free = {"student_query_prompt": ""} if name.startswith("qwen3") else {}
    model = from_teacher(teacher, [0, 3], **prompt_free)
    train, held_out = make_datasets(model, queries)
    trainer = EmbeddingAlignmentTrainer(
        model, make_args(tmp_path, save_strategy="no"), train_dataset=train, eval_dataset=held_out
    )
    before = trainer.evaluate()
    trainer.train()
    assert trainer.evaluate()["eval_loss"] < 0.9 * before["eval_loss"]
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in model.query_parameters()}  # the student's Dense layers train too


def test_eval_cosine_matches_direct_computation(tiny_student, queries, tmp_path):
    train, held_out = make_datasets(tiny_student, queries)
    trainer = EmbeddingAlignmentTrainer(tiny_student, make_args(tmp_path), train_dataset=train, eval_dataset=held_out)
    metrics = trainer.evaluate()
    student = tiny_student.encode_queries(queries[240:])
    expected = torch.nn.functional.cosine_similarity(student, held_out.teacher_embeddings).mean().item()
    assert metrics["eval_mean_cosine"] == pytest.approx(expected, abs=1e-5)
    assert metrics["eval_loss"] == pytest.approx(1 - expected, rel=1e-3)  # the default loss: 1 - cosine


def test_resume_from_checkpoint(tiny_student, queries, tmp_path):
    train, held_out = make_datasets(tiny_student, queries)
    EmbeddingAlignmentTrainer(
        tiny_student, make_args(tmp_path, max_steps=6, eval_strategy="no"), train_dataset=train
    ).train()
    args = make_args(tmp_path, resume_from_checkpoint="true", eval_strategy="no")
    assert args.resume_from_checkpoint is True
    trainer = EmbeddingAlignmentTrainer(
        AsymmetricDualEncoder.from_pretrained(tmp_path / "run" / "checkpoint-6"), args, train_dataset=train
    )
    trainer.train(resume_from_checkpoint=True)
    assert trainer.state.global_step == 12
    # the history restored from checkpoint-6 continues: steps 4 (first run), 8 and 12 (resumed run)
    assert [entry["step"] for entry in trainer.state.log_history if "loss" in entry] == [4, 8, 12]


def test_output_dir_with_a_run_is_protected(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    make_args(tmp_path)  # unrelated files are fine
    (tmp_path / "run" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="already holds a run; pass --overwrite_output_dir"):
        make_args(tmp_path)
    assert (tmp_path / "run" / "config.json").read_text() == "{}"
    make_args(tmp_path, overwrite_output_dir=True)
    make_args(tmp_path, resume_from_checkpoint="true")


def test_unknown_loss_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="Unknown loss 'kl'"):
        make_args(tmp_path, loss="kl")


def test_retrieval_metrics_during_training_agree_with_mteb(tiny_student, queries, tmp_path):
    from hfdistill.evaluation import evaluate_student
    from hfdistill.retrieval_tasks import LocalBeirRetrieval
    from tests.test_evaluation import write_beir

    beir = write_beir(tmp_path / "beir")
    train, held_out = make_datasets(tiny_student, queries)
    args = make_args(
        tmp_path,
        retrieval_eval_dir=str(beir),
        retrieval_cache_dir=str(tmp_path / "cache"),
        metric_for_best_model="retention",
        load_best_model_at_end=True,
        max_steps=6,
        eval_steps=3,
        save_steps=3,
    )
    trainer = EmbeddingAlignmentTrainer(tiny_student, args, train_dataset=train, eval_dataset=held_out)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "eval_retention" in entry]
    assert len(logged) == 2 and all("eval_loss" in entry and "eval_ndcg_at_10" in entry for entry in logged)
    metrics = trainer.evaluate()
    report = evaluate_student(tiny_student, "tiny", [LocalBeirRetrieval.from_folder(beir)], tmp_path / "cache")
    assert metrics["eval_ndcg_at_10"] == pytest.approx(report["tasks"]["beir"]["student"]["ndcg_at_10"], abs=1e-4)
    assert metrics["eval_teacher_ndcg_at_10"] == pytest.approx(
        report["tasks"]["beir"]["teacher"]["ndcg_at_10"], abs=1e-4
    )
    assert metrics["eval_retention"] == pytest.approx(report["mean_retention"], abs=1e-3)
    assert trainer.state.best_metric == max(entry["eval_retention"] for entry in logged)


def test_missing_retrieval_eval_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="retrieval_eval_dir .* is not a folder"):
        make_args(tmp_path, retrieval_eval_dir=str(tmp_path / "nope"))


def test_a_non_finite_loss_stops_training_before_anything_is_saved(tiny_student, queries, tmp_path):
    train, held_out = make_datasets(tiny_student, queries)
    train.teacher_embeddings = train.teacher_embeddings.clone()
    train.teacher_embeddings[-3:] = float("nan")  # Trainer alone would drop such batches from the logged loss
    trainer = EmbeddingAlignmentTrainer(
        tiny_student, make_args(tmp_path, save_steps=2, eval_strategy="no"), train_dataset=train
    )
    with pytest.raises(FloatingPointError, match=r"The alignment loss is nan at step \d+: training stopped before"):
        trainer.train()
    assert all(torch.isfinite(p).all() for p in tiny_student.parameters())
    run = tmp_path / "run"
    assert not run.exists() or all(path.name.startswith("checkpoint-") for path in run.iterdir())  # no final model


def test_length_grouped_batches_take_the_token_counts_without_reading_items(tiny_student, queries, tmp_path):
    train, _ = make_datasets(tiny_student, queries)
    counted = [len(train[i]["input_ids"]) for i in range(len(train))]  # what Trainer would read item by item
    assert train.lengths == counted and len(set(counted)) > 3
    args = make_args(tmp_path, eval_strategy="no", train_sampling_strategy="group_by_length")
    trainer = EmbeddingAlignmentTrainer(tiny_student, args, train_dataset=train)
    train.teacher_embeddings = None  # an item read now would fail
    torch.manual_seed(0)
    order = list(trainer._get_train_sampler())
    assert sorted(order) == list(range(len(train)))
    batches = [order[i : i + 16] for i in range(0, len(order), 16)]
    spread = sum(max(counted[i] for i in b) - min(counted[i] for i in b) for b in batches) / len(batches)
    assert spread < 0.5 * (max(counted) - min(counted))  # batches hold queries of similar length


@pytest.mark.parametrize("sampling", ["random", "group_by_length"])
def test_a_resumed_run_trains_on_the_batches_of_the_run_it_continues(tiny_teacher, queries, tmp_path, sampling):
    """Stopped after checkpoint-8 of 16 steps and resumed, a run logs the uninterrupted run's loss at every step."""
    import shutil

    def run(folder, resume=None) -> dict[int, float]:
        model = from_teacher(tiny_teacher, [0, 3])
        train, held_out = make_datasets(model, queries)
        args = make_args(tmp_path, output_dir=str(tmp_path / folder), max_steps=16, save_steps=8, logging_steps=1,
                         eval_strategy="no", train_sampling_strategy=sampling, per_device_train_batch_size=8,
                         resume_from_checkpoint=resume)  # fmt: skip
        trainer = EmbeddingAlignmentTrainer(model, args, train_dataset=train, eval_dataset=held_out)
        trainer.train(resume_from_checkpoint=resume)
        return {entry["step"]: entry["loss"] for entry in trainer.state.log_history if "loss" in entry}

    whole = run("whole")
    shutil.copytree(tmp_path / "whole" / "checkpoint-8", tmp_path / "resumed" / "checkpoint-8")
    resumed = run("resumed", str(tmp_path / "resumed" / "checkpoint-8"))  # its history holds steps 1-8 as read
    assert sorted(resumed) == sorted(whole) == list(range(1, 17))
    assert resumed == pytest.approx(whole, rel=1e-5)


def test_resuming_from_a_checkpoint_at_max_steps_trains_no_further_step(tiny_teacher, queries, tmp_path):
    model = from_teacher(tiny_teacher, [0, 3])
    train, held_out = make_datasets(model, queries)
    args = make_args(tmp_path, max_steps=6, save_steps=6, eval_strategy="no", per_device_train_batch_size=64)
    EmbeddingAlignmentTrainer(model, args, train_dataset=train, eval_dataset=held_out).train()  # 4 batches an epoch
    saved = AsymmetricDualEncoder.from_pretrained(tmp_path / "run" / "checkpoint-6").encode_queries(queries[:4])
    fresh = from_teacher(tiny_teacher, [0, 3])
    args = make_args(tmp_path, max_steps=6, save_steps=6, eval_strategy="no", per_device_train_batch_size=64,
                     resume_from_checkpoint=True)  # fmt: skip
    trainer = EmbeddingAlignmentTrainer(fresh, args, train_dataset=train, eval_dataset=held_out)
    output = trainer.train(resume_from_checkpoint=True)
    assert output.global_step == trainer.state.global_step == 6
    torch.testing.assert_close(fresh.encode_queries(queries[:4]), saved)
    assert not (tmp_path / "run" / "checkpoint-7").exists()
