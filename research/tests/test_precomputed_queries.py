import json

import pytest
import torch

from hfdistill import from_teacher
from hfdistill.data import split_queries
from hfdistill.retrieval_tasks import read_beir_folder
from tests.conftest import run_script
from tests.test_evaluation import write_beir


def test_teacher_targets_are_the_distill_split_and_the_teachers_query_vectors(tiny_teacher, queries, tmp_path):
    (tmp_path / "q.tsv").write_text("".join(f"{i}\t{q}\n" for i, q in enumerate(queries)))
    run_script(["-m", "research.baselines.teacher_targets", "--teacher", tiny_teacher, "--train_queries",
                str(tmp_path / "q.tsv"), "--num_eval_queries", "4", "--max_train_samples", "10",
                "--embedding_cache_dir", str(tmp_path / "cache"), "--output", str(tmp_path / "t.pt")])  # fmt: skip
    stored = torch.load(tmp_path / "t.pt", weights_only=True)
    assert stored["texts"] == split_queries(queries, 4, 10, 42)[0]
    expected = from_teacher(tiny_teacher, []).encode_teacher_queries(stored["texts"])
    torch.testing.assert_close(stored["targets"], expected.float(), atol=1e-5, rtol=1e-4)


def test_precomputed_queries_score_as_the_student_that_computed_them(tiny_student, tmp_path):
    beir = write_beir(tmp_path / "tinybeir")
    tiny_student.save_pretrained(tmp_path / "student")
    texts = list(read_beir_folder(beir)["queries"].values())
    own = tiny_student.encode_queries(texts)
    embeddings = {"own": own, "reversed": own.flip(0)}  # the same vectors given to the wrong queries
    torch.save({"texts": texts, "embeddings": embeddings}, tmp_path / "e.pt")
    common = ["--model", str(tmp_path / "student"), "--tasks", "tinybeir", "--data_dir", str(tmp_path),
              "--cache_dir", str(tmp_path / "c")]  # fmt: skip
    run_script(["recipes/evaluate.py", *common, "--output_dir", str(tmp_path / "torch")])
    run_script(["-m", "research.precomputed_queries", *common, "--embeddings", str(tmp_path / "e.pt"),
                "--output_dir", str(tmp_path / "pre")])  # fmt: skip
    scores = {
        name: json.loads((tmp_path / folder / file).read_text())["tasks"]["tinybeir"]["student"]["ndcg_at_10"]
        for name, folder, file in [
            ("torch", "torch", "eval_results.json"),
            ("own", "pre", "eval_results_own.json"),
            ("reversed", "pre", "eval_results_reversed.json"),
        ]
    }
    assert scores["own"] == pytest.approx(scores["torch"], abs=1e-6)
    assert scores["reversed"] < scores["own"]
    torch.save({"texts": texts[1:], "embeddings": {"own": own[1:]}}, tmp_path / "short.pt")
    result = run_script(["-m", "research.precomputed_queries", *common, "--embeddings", str(tmp_path / "short.pt"),
                         "--output_dir", str(tmp_path / "bad")], check=False)  # fmt: skip
    assert result.returncode != 0 and "1 queries have no precomputed embedding" in result.stderr
