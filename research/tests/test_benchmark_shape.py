import json

import pytest

from hfdistill.benchmark import SpeedResults
from research.benchmark_shape import random_student
from tests.conftest import run_script


def test_shape_benchmark_times_prompted_and_prompt_free_students(tiny_teacher, queries, tmp_path):
    """Random weights of a checkpoint's shape (here a tiny Qwen3 config) with a stand-in tokenizer."""
    from transformers import Qwen3Config

    Qwen3Config(vocab_size=100, hidden_size=32, num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2,
                head_dim=8, intermediate_size=37).save_pretrained(tmp_path / "shape")  # fmt: skip
    model = random_student(str(tmp_path / "shape"), tiny_teacher, [0, 5], "lasttoken", "search the index for:", "left")
    assert model.tokenizer.padding_side == "left" and model.config.pooling_mode == "lasttoken"
    assert len(model.query_encoder.layers) == 2 and len(model.document_encoder.layers) == 6
    (tmp_path / "q.tsv").write_text("".join(f"{i}\t{q}\n" for i, q in enumerate(queries)))
    result = run_script(["-m", "research.benchmark_shape", "--teacher_config", str(tmp_path / "shape"),
                         "--tokenizer", tiny_teacher, "--student_layers", "0", "5", "--pooling", "lasttoken",
                         "--padding_side", "left", "--query_prompt", "search the index for:",
                         "--queries", str(tmp_path / "q.tsv"),
                         "--batch_sizes", "1", "4", "--repeats", "1", "--latency_queries", "5", "--threads", "1",
                         "--output_dir", str(tmp_path / "out")])  # fmt: skip
    saved = json.loads((tmp_path / "out" / "shape_speed_results.json").read_text())
    assert set(saved) == {"prompted", "prompt_free"}
    # "search the index for:" is 5 tokens of the tiny vocabulary ("search", "the", "index", "[UNK]", "[UNK]")
    assert saved["prompted"]["mean_student_tokens"] == pytest.approx(saved["prompt_free"]["mean_student_tokens"] + 5)
    speed = SpeedResults.from_dict({k: v for k, v in saved["prompt_free"].items() if k != "mean_student_tokens"})
    assert "prompt_free student [0, 5]" in result.stdout and speed.speedup(speed.encoder("student"), "4") > 0
