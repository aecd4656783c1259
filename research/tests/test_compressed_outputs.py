import json

import pytest
import torch

from hfdistill.evaluation import evaluate_student
from hfdistill.retrieval_tasks import LocalBeirRetrieval, read_beir_folder
from tests.conftest import run_in_process
from tests.test_evaluation import beir, hand_ndcg_at_10  # noqa: F401


def test_compressed_outputs_score_both_sides_compressed(tiny_student, beir, tmp_path):  # noqa: F811
    tiny_student.save_pretrained(tmp_path / "student")
    run_in_process(["-m", "research.compressed_outputs", "--model", str(tmp_path / "student"), "--tasks", "tinybeir",
                    "--data_dir", str(beir.parent), "--cache_dir", str(tmp_path / "cache"),
                    "--output_dir", str(tmp_path)])  # fmt: skip
    rows = json.loads((tmp_path / "compressed_outputs.json").read_text())["compressions"]
    report = evaluate_student(tiny_student, "tiny", [LocalBeirRetrieval.from_folder(beir)], tmp_path / "cache")
    for role in ("teacher", "student"):
        assert rows["none"]["tinybeir"][role] == pytest.approx(report["tasks"]["tinybeir"][role]["ndcg_at_10"])
    data = read_beir_folder(beir)
    query_ids, doc_ids = list(data["queries"]), list(data["corpus"])
    docs = tiny_student.encode_documents([data["corpus"][d]["text"] for d in doc_ids])
    queries = tiny_student.encode_queries(list(data["queries"].values()))
    half = [torch.nn.functional.normalize(x[:, : x.shape[1] // 2], dim=-1) for x in (queries, docs)]
    assert rows["dims/2"]["tinybeir"]["student"] == pytest.approx(
        hand_ndcg_at_10(*half, query_ids, doc_ids, data["qrels"]), abs=1e-4
    )
    assert rows["binary"]["tinybeir"]["student"] != rows["none"]["tinybeir"]["student"]  # binary: mteb's own
    student = rows["int8"]["tinybeir"]
    assert student["retention"] == pytest.approx(student["student"] / rows["none"]["tinybeir"]["teacher"])
