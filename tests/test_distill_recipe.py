"""The distill recipe end to end: real MiniLM teacher on real queries, and a 2-process accelerate launch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hfdistill import AsymmetricDualEncoder

ROOT = Path(__file__).resolve().parents[1]


def run(command: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.mark.slow
def test_minilm_recipe_improves_alignment_over_the_truncated_student(minilm, tmp_path):
    out = tmp_path / "minilm-2L"
    run(
        [
            sys.executable,
            "recipes/distill.py",
            "recipes/configs/minilm-2L.yaml",
            "--output_dir",
            str(out),
            "--max_train_samples",
            "1536",
            "--num_eval_queries",
            "300",
            "--per_device_train_batch_size",
            "64",
            "--learning_rate",
            "5e-4",
            "--warmup_steps",
            "0",
            "--eval_strategy",
            "no",
            "--save_strategy",
            "no",
            "--embedding_cache_dir",
            str(tmp_path / "cache"),
            "--disable_tqdm",
            "true",
        ],
        tmp_path,
    )
    untrained = json.loads((out / "untrained_results.json").read_text())
    trained = json.loads((out / "alignment_results.json").read_text())
    assert trained["eval_loss"] < 0.8 * untrained["untrained_loss"]
    assert trained["eval_mean_cosine"] > untrained["untrained_mean_cosine"] + 0.02
    model = AsymmetricDualEncoder.from_pretrained(out)
    assert model.config.student_layers == [0, 5] and len(model.query_encoder.encoder.layer) == 2
    assert model.config.teacher_name_or_path == minilm
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2  # train and held-out targets


def test_accelerate_launch_two_processes(tiny_teacher, queries, tmp_path):
    query_file = tmp_path / "queries.tsv"
    query_file.write_text("".join(f"{i}\t{q}\n" for i, q in enumerate(queries)))
    out = tmp_path / "ddp"
    run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--num_processes",
            "2",
            "--cpu",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "recipes/distill.py",
            "--teacher",
            tiny_teacher,
            "--student_layers",
            "0",
            "3",
            "--train_queries",
            str(query_file),
            "--num_eval_queries",
            "40",
            "--per_device_train_batch_size",
            "8",
            "--max_steps",
            "3",
            "--warmup_steps",
            "0",
            "--output_dir",
            str(out),
            "--embedding_cache_dir",
            str(tmp_path / "cache"),
            "--save_strategy",
            "no",
            "--report_to",
            "none",
        ],
        tmp_path,
    )
    state = json.loads((out / "all_results.json").read_text())
    assert state["train_samples_per_second"] > 0
    model = AsymmetricDualEncoder.from_pretrained(out)
    teacher = AsymmetricDualEncoder.from_teacher(tiny_teacher, [0, 3])
    for key, value in teacher.document_encoder.state_dict().items():  # the teacher stayed frozen under DDP
        assert torch.equal(model.document_encoder.state_dict()[key], value), key
    assert not torch.equal(
        model.query_encoder.encoder.layer[0].output.dense.weight,
        teacher.query_encoder.encoder.layer[0].output.dense.weight,
    )
