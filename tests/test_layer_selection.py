import json

import pytest
import torch

from hfdistill import AsymmetricDualEncoder
from hfdistill.layer_selection import auto_select_layers, candidate_layer_sets, rank_layer_sets
from tests.conftest import run_script, tiny_distill_args


def test_candidates():
    assert candidate_layer_sets(4, 2) == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]
    sampled = candidate_layer_sets(12, 4, max_candidates=20)
    assert len(sampled) == 20 and len({tuple(c) for c in sampled}) == 20
    assert [0, 1, 10, 11] in sampled and [2, 5, 8, 11] in sampled  # the named strategies are always scored
    with pytest.raises(ValueError, match="num_student_layers=5"):
        candidate_layer_sets(4, 5)


def test_proxy_equals_the_alignment_of_the_built_student(tiny_teacher, queries, tmp_path):
    best, ranking, seconds = auto_select_layers(tiny_teacher, queries[:50], 2, tmp_path)
    assert len(ranking) == 6 and best == ranking[0]["layers"] and seconds > 0
    scores = [c["mean_cosine"] for c in ranking]
    assert scores == sorted(scores, reverse=True)
    for candidate in (ranking[0], ranking[-1]):
        student = AsymmetricDualEncoder.from_teacher(tiny_teacher, candidate["layers"])
        cosine = torch.nn.functional.cosine_similarity(
            student.encode_queries(queries[:50]), student.encode_documents(queries[:50])
        )
        assert candidate["mean_cosine"] == pytest.approx(cosine.mean().item(), abs=1e-5)


def test_ranking_restores_the_model(tiny_student, queries, tmp_path):
    before = tiny_student.encode_queries(queries[:5])
    rank_layer_sets(tiny_student, queries[:20], 1, tmp_path)
    torch.testing.assert_close(tiny_student.encode_queries(queries[:5]), before)
    with pytest.raises(ValueError, match="needs held-out queries"):
        rank_layer_sets(tiny_student, [], 1, tmp_path)


@pytest.mark.parametrize("option", [["--layer_strategy", "auto"], ["--student_layers", "auto"]])
def test_recipe_with_auto_layers(tiny_teacher, queries, tmp_path, option):
    out = tmp_path / "auto"
    distill = tiny_distill_args(tiny_teacher, queries, tmp_path, batch_size=16)
    distill = distill[:3] + distill[6:]  # drop the explicit --student_layers 0 3
    auto = [*option, "--num_student_layers", "2", "--max_steps", "2", "--output_dir", str(out)]
    run_script(distill + auto + ["--save_strategy", "no"])
    record = json.loads((out / "distillation.json").read_text())
    selected = record["layer_selection"]["selected"]
    assert selected == record["layer_selection"]["ranking"][0]["layers"]
    assert AsymmetricDualEncoder.from_pretrained(out).config.student_layers == selected


def test_select_layers_recipe_ranks_all_candidates(tiny_teacher, queries, tmp_path):
    distill = tiny_distill_args(tiny_teacher, queries, tmp_path, batch_size=16)
    query_file = distill[distill.index("--train_queries") + 1]
    out = tmp_path / "ranking.json"
    result = run_script(["recipes/select_layers.py", "--teacher", tiny_teacher, "--train_queries", query_file,
                         "--num_eval_queries", "40", "--num_student_layers", "2", "--output_file", str(out),
                         "--embedding_cache_dir", str(tmp_path / "cache")])  # fmt: skip
    ranking = json.loads(out.read_text())
    assert [c["layers"] for c in ranking["ranking"]] and len(ranking["ranking"]) == 6  # C(4, 2) candidates
    scores = [c["mean_cosine"] for c in ranking["ranking"]]
    assert scores == sorted(scores, reverse=True) and ranking["selected"] == ranking["ranking"][0]["layers"]
    assert ranking["num_queries"] == 40 and f"selected {ranking['selected']}" in result.stdout
