import json
import sys

import pytest
import torch

from hfdistill import from_teacher
from hfdistill.data import split_queries
from hfdistill.evaluation import evaluate_student
from hfdistill.retrieval_tasks import LocalBeirRetrieval, read_beir_folder
from hfdistill.training_args import QueryDataArguments
from research import precomputed_queries
from research.baselines import teacher_targets
from tests.test_evaluation import write_beir


def test_teacher_targets_are_the_distill_split_and_the_teachers_query_vectors(tiny_teacher, queries, tmp_path):
    (tmp_path / "q.tsv").write_text("".join(f"{i}\t{q}\n" for i, q in enumerate(queries)))
    data = QueryDataArguments(train_queries=str(tmp_path / "q.tsv"), num_eval_queries=4, max_train_samples=10,
                              embedding_cache_dir=str(tmp_path / "cache"))  # fmt: skip
    teacher_targets.main(teacher_targets.TargetArguments(teacher=tiny_teacher, output=str(tmp_path / "t.pt")), data)
    stored = torch.load(tmp_path / "t.pt", weights_only=True)
    assert stored["texts"] == split_queries(queries, 4, 10, 42)[0]
    expected = from_teacher(tiny_teacher, []).encode_teacher_queries(stored["texts"])
    torch.testing.assert_close(stored["targets"], expected.float(), atol=1e-5, rtol=1e-4)


def test_precomputed_queries_score_as_the_student_that_computed_them(tiny_student, tmp_path, monkeypatch):
    beir = write_beir(tmp_path / "tinybeir")
    tiny_student.save_pretrained(tmp_path / "student")
    texts = list(read_beir_folder(beir)["queries"].values())
    own = tiny_student.encode_queries(texts)
    embeddings = {"own": own, "reversed": own.flip(0)}  # the same vectors given to the wrong queries
    torch.save({"texts": texts, "embeddings": embeddings}, tmp_path / "e.pt")
    common = ["--model", str(tmp_path / "student"), "--tasks", "tinybeir", "--data_dir", str(tmp_path),
              "--cache_dir", str(tmp_path / "c")]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["x", *common, "--embeddings", str(tmp_path / "e.pt"), "--output_dir",
                                      str(tmp_path / "pre")])  # fmt: skip
    precomputed_queries.main()
    reference = evaluate_student(tiny_student, "s", [LocalBeirRetrieval.from_folder(beir)], tmp_path / "c")
    scores = {
        name: json.loads((tmp_path / "pre" / f"eval_results_{name}.json").read_text())["tasks"]["tinybeir"]["student"]
        for name in embeddings
    }
    assert scores["own"]["ndcg_at_10"] == pytest.approx(reference["tasks"]["tinybeir"]["student"]["ndcg_at_10"])
    assert scores["reversed"]["ndcg_at_10"] < scores["own"]["ndcg_at_10"]
    torch.save({"texts": texts[1:], "embeddings": {"own": own[1:]}}, tmp_path / "short.pt")
    monkeypatch.setattr(sys, "argv", ["x", *common, "--embeddings", str(tmp_path / "short.pt"), "--output_dir",
                                      str(tmp_path / "bad")])  # fmt: skip
    with pytest.raises(ValueError, match="1 queries have no precomputed embedding"):
        precomputed_queries.main()
