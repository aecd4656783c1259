import json

import pytest
import torch

from hfdistill import from_teacher
from research.alignment import alignment_by_length, join_consecutive, query_cosines
from tests.conftest import run_in_process


def test_full_depth_student_is_aligned_everywhere(tiny_teacher, queries, tmp_path):
    full = from_teacher(tiny_teacher, [0, 1, 2, 3])  # the teacher itself as the student
    report = alignment_by_length(full, queries, tmp_path, bins=(6, 9))
    assert report["mean_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert all(row["mean_cosine"] == pytest.approx(1.0, abs=1e-5) for row in report["by_length"])


def test_bins_partition_the_queries_by_token_count(tiny_student, queries, tmp_path):
    cosines = query_cosines(tiny_student, queries, tmp_path)
    report = alignment_by_length(tiny_student, queries, tmp_path, bins=(6, 9))
    assert [row["tokens"] for row in report["by_length"]] == ["0-5", "6-8", "9+"]
    assert sum(row["queries"] for row in report["by_length"]) == len(queries) == report["queries"]
    lengths = torch.tensor([len(tiny_student.tokenizer(q).input_ids) for q in queries])  # words + [CLS] + [SEP]
    short = cosines[lengths < 6]
    assert report["by_length"][0]["queries"] == len(short)
    assert report["by_length"][0]["mean_cosine"] == pytest.approx(float(short.mean()), abs=1e-6)
    assert report["mean_cosine"] == pytest.approx(float(cosines.mean()), abs=1e-6) and report["mean_cosine"] < 1 - 1e-4
    with pytest.raises(ValueError, match="at least one query"):
        alignment_by_length(tiny_student, [], tmp_path)


def test_rarity_bins_group_queries_by_their_rarest_training_token(tiny_student, tmp_path):
    train = ["cat dog"] * 10 + ["sun"] * 2 + ["cat"] * 200
    report = alignment_by_length(tiny_student, ["cat dog", "sun", "moon", "cat"], tmp_path, train_queries=train)
    cosines = query_cosines(tiny_student, ["cat dog", "sun", "moon", "cat"], tmp_path)
    rows = {row["rarest_token_count"]: row for row in report["by_rarity"]}
    assert {label: row["queries"] for label, row in rows.items()} == {"0-4": 2, "5-19": 1, "100-999": 1}  # dog: 10
    assert rows["0-4"]["mean_cosine"] == pytest.approx(float(cosines[1:3].mean()), abs=1e-6)  # "sun" 2, "moon" 0
    assert "by_rarity" not in alignment_by_length(tiny_student, ["cat"], tmp_path)


def test_recipe_reports_a_query_file(tiny_student, queries, tmp_path):
    tiny_student.save_pretrained(tmp_path / "student")
    query_file, output = tmp_path / "q.jsonl", tmp_path / "report.json"
    query_file.write_text("".join(json.dumps({"_id": str(i), "text": q}) + "\n" for i, q in enumerate(queries)))
    args = ["-m", "research.alignment_report", "--model", str(tmp_path / "student"), "--queries", str(query_file),
            "--embedding_cache_dir", str(tmp_path / "cache"), "--output_file", str(output),
            "--train_queries", str(query_file), "--num_eval_queries", "10"]  # fmt: skip
    printed = run_in_process(args).stdout
    report = json.loads(output.read_text())
    assert report["queries"] == len(queries) and f"mean cosine {report['mean_cosine']:.4f}" in printed
    assert sum(row["queries"] for row in report["by_rarity"]) == len(queries) and "times in training" in printed
    assert report["queries_from"] == str(query_file) and len(report["by_length"]) == 2  # 2-9 words: two bins
    printed = run_in_process(args + ["--join", "4", "--by_rarity", "false"]).stdout
    joined = json.loads(output.read_text())
    assert (joined["joined"], joined["queries"]) == (4, len(queries) // 4) and "(4 joined per text)" in printed
    assert "by_rarity" not in joined and "times in training" not in printed
    assert [row["tokens"] for row in joined["by_length"]][0] != "0-7"  # 4 queries of 2+ words: no text under 8 tokens


def test_join_consecutive_makes_long_inputs_of_real_queries():
    texts = ["a b", "c", "d e f", "g", "h"]
    assert join_consecutive(texts, 2) == ["a b c", "d e f g"]  # the short tail ("h") is dropped
    assert join_consecutive(texts, 1) == texts
    with pytest.raises(ValueError, match="join must be >= 1, got 0"):
        join_consecutive(texts, 0)
    with pytest.raises(ValueError, match="join=6 is more than the 5 queries given"):
        join_consecutive(texts, 6)
