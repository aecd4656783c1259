import json

import pytest
import torch

from hfdistill import AsymmetricDualEncoder, from_teacher
from hfdistill.layer_selection import (
    auto_select_layers,
    candidate_layer_sets,
    mean_cosine,
    rank_layer_sets,
    train_shortlist,
)
from hfdistill.training_args import EmbeddingAlignmentConfig
from tests.conftest import run_in_process, tiny_distill_args


def test_candidates():
    assert candidate_layer_sets(4, 2) == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]
    sampled = candidate_layer_sets(12, 4, max_candidates=20)
    assert len(sampled) == 20 and len({tuple(c) for c in sampled}) == 20
    assert [0, 1, 10, 11] in sampled and [2, 5, 8, 11] in sampled  # the named strategies are always scored
    with pytest.raises(ValueError, match="num_student_layers=5"):
        candidate_layer_sets(4, 5)


def unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def test_mean_cosine_scores_the_teacher_itself_one_and_a_rotation_less():
    torch.manual_seed(0)
    teacher = unit(torch.randn(200, 8))
    assert mean_cosine(teacher, teacher) == pytest.approx(1.0)
    assert mean_cosine(teacher @ torch.linalg.qr(torch.randn(8, 8)).Q, teacher) < 0.5


def test_proxies_equal_those_of_the_built_student(tiny_teacher, queries, tmp_path):
    best, ranking, seconds = auto_select_layers(tiny_teacher, queries[:50], 2, tmp_path)
    assert len(ranking) == 6 and best == ranking[0]["layers"] and seconds > 0
    scores = [c["cosine"] for c in ranking]
    assert scores == sorted(scores, reverse=True)
    for candidate in (ranking[0], ranking[-1]):
        student = from_teacher(tiny_teacher, candidate["layers"])
        embeddings = unit(student.encode_queries(queries[:50])), unit(student.encode_documents(queries[:50]))
        assert candidate["cosine"] == pytest.approx(mean_cosine(*embeddings), abs=1e-5)


def test_ranking_given_candidates(tiny_student, queries, tmp_path):
    given = rank_layer_sets(tiny_student, queries[:30], 2, tmp_path, candidates=[[3], [0, 3], [0, 1, 2, 3]])
    assert sorted(c["layers"] for c in given) == [[0, 1, 2, 3], [0, 3], [3]]
    assert given[0]["layers"] == [0, 1, 2, 3] and given[0]["cosine"] == pytest.approx(1.0, abs=1e-5)  # the teacher
    with pytest.raises(ValueError, match=r"Candidate \[0, 4\] must hold layer indices of the teacher's 4"):
        rank_layer_sets(tiny_student, queries[:30], 2, tmp_path, candidates=[[0, 4]])


def test_short_training_ranks_the_shortlist_by_trained_alignment(tiny_teacher, queries, tmp_path):
    def trials(learning_rate: float, shortlist: list[list[int]]) -> dict[tuple, float]:
        args = EmbeddingAlignmentConfig(
            output_dir=str(tmp_path / "run"), per_device_train_batch_size=8, learning_rate=learning_rate,
            warmup_steps=0, report_to="none", use_cpu=True, seed=0, loss="cosine",
        )  # fmt: skip
        ranked = train_shortlist(tiny_teacher, shortlist, queries[:200], queries[200:], args, 3, tmp_path / "cache")
        cosines = [t["trained_cosine"] for t in ranked]
        assert cosines == sorted(cosines, reverse=True) and sorted(t["layers"] for t in ranked) == sorted(shortlist)
        return {tuple(t["layers"]): t["trained_cosine"] for t in ranked}

    shortlist = [[3], [0, 1, 2, 3], [0, 3]]
    untrained = {
        tuple(c["layers"]): c["cosine"]
        for c in auto_select_layers(tiny_teacher, queries[200:], 1, tmp_path / "cache", candidates=shortlist)[1]
    }
    assert trials(1e-12, shortlist) == pytest.approx(untrained, abs=1e-5)  # steps that move nothing: the untrained
    trained = trials(5e-3, shortlist)
    assert all(abs(trained[layers] - untrained[layers]) > 1e-3 for layers in trained)  # each candidate trained
    assert trials(5e-3, [[3]])[(3,)] == pytest.approx(trained[(3,)])  # same seed, same batches: reproducible
    assert not (tmp_path / "run").exists()  # trials save nothing
    with pytest.raises(ValueError, match="needs steps >= 1 and candidates, got 0 steps"):
        train_shortlist(tiny_teacher, shortlist, queries, queries, EmbeddingAlignmentConfig(), 0, tmp_path)


def test_ranking_restores_the_model(tiny_student, queries, tmp_path):
    before = tiny_student.encode_queries(queries[:5])
    rank_layer_sets(tiny_student, queries[:20], 1, tmp_path)
    torch.testing.assert_close(tiny_student.encode_queries(queries[:5]), before)
    with pytest.raises(ValueError, match="needs held-out queries"):
        rank_layer_sets(tiny_student, [], 1, tmp_path)


def test_ranking_a_decoder_scores_each_set_as_its_student(tmp_path, queries):
    """On Qwen3 (per-layer attention types, a layer count the model reads on each forward) a candidate scores what
    the student of those layers computes, and the model is restored."""
    from tests.conftest import QWEN3_PROMPTS, write_st_teacher

    teacher = write_st_teacher(tmp_path / "qwen3", "qwen3", "lasttoken", prompts=QWEN3_PROMPTS)
    model = from_teacher(teacher, [0, 3])
    before = model.encode_queries(queries[:5])
    ranked = {tuple(c["layers"]): c["cosine"] for c in rank_layer_sets(model, queries[:20], 2, tmp_path / "cache")}
    torch.testing.assert_close(model.encode_queries(queries[:5]), before)
    for layers in ([1, 2], [0, 3]):
        student = from_teacher(teacher, layers)
        cosine = torch.nn.functional.cosine_similarity(
            student.encode_queries(queries[:20]), student.encode_teacher_queries(queries[:20])
        )
        assert ranked[tuple(layers)] == pytest.approx(cosine.mean().item(), abs=1e-5)


@pytest.mark.parametrize(
    "option, trials",
    [
        (["--student_layers", "auto", "--selection_training_steps", "0"], 0),  # the proxy alone
        (["--student_layers", "auto", "--selection_training_steps", "2", "--selection_shortlist", "2"], 2),
    ],
)
def test_recipe_with_auto_layers(tiny_teacher, queries, tmp_path, option, trials):
    out = tmp_path / "auto"
    distill = tiny_distill_args(tiny_teacher, queries, tmp_path, batch_size=16, layers=())
    auto = [*option, "--num_student_layers", "2", "--max_steps", "2", "--output_dir", str(out)]
    run_in_process(distill + auto + ["--save_strategy", "no"])
    record = json.loads((out / "distillation.json").read_text())
    selection = record["layer_selection"]
    assert selection["selected"] == (selection["trials"] if trials else selection["ranking"])[0]["layers"]
    assert len(selection.get("trials", [])) == trials
    assert AsymmetricDualEncoder.from_pretrained(out).config.student_layers == selection["selected"]


def test_select_layers_recipe_ranks_all_candidates(tiny_teacher, queries, tmp_path):
    distill = tiny_distill_args(tiny_teacher, queries, tmp_path, batch_size=16)
    query_file = distill[distill.index("--train_queries") + 1]
    out = tmp_path / "ranking.json"
    command = ["recipes/select_layers.py", "--teacher", tiny_teacher, "--train_queries", query_file,
               "--num_eval_queries", "40", "--num_student_layers", "2", "--selection_training_steps", "0",
               "--embedding_cache_dir", str(tmp_path / "cache")]  # fmt: skip
    result = run_in_process(command + ["--output_file", str(out)])
    ranking = json.loads(out.read_text())
    assert [c["layers"] for c in ranking["ranking"]] and len(ranking["ranking"]) == 6  # C(4, 2) candidates
    scores = [c["cosine"] for c in ranking["ranking"]]
    assert scores == sorted(scores, reverse=True) and ranking["selected"] == ranking["ranking"][0]["layers"]
    assert ranking["num_queries"] == 40 and f"selected {ranking['selected']} by cosine: 6" in result.stdout
    given = ["--candidates", "3", "0,3", "--output_file", str(out)]
    result = run_in_process(command + given)
    ranking = json.loads(out.read_text())
    assert sorted(c["layers"] for c in ranking["ranking"]) == [[0, 3], [3]]
    assert ranking["ranking"][0]["cosine"] >= ranking["ranking"][1]["cosine"]
    assert "by cosine: 2 candidates" in result.stdout
    failed = run_in_process(command + ["--candidates", "0,top"], check=False)
    assert failed.returncode != 0 and "candidates must be comma-separated layer indices" in failed.stderr
    short = ["--selection_training_steps", "3", "--selection_shortlist", "2", "--per_device_train_batch_size", "8",
             "--learning_rate", "5e-3", "--warmup_steps", "0", "--output_file", str(out)]  # fmt: skip
    result = run_in_process(command + short)
    ranking = json.loads(out.read_text())
    trials = ranking["trials"]
    assert [t["layers"] for t in sorted(trials, key=lambda t: t["layers"])] == sorted(
        c["layers"] for c in ranking["ranking"][:2]
    )  # the proxy's top two were trained
    assert ranking["selected"] == trials[0]["layers"] and trials[0]["trained_cosine"] >= trials[1]["trained_cosine"]
    assert "after 3 steps" in result.stdout and "by cosine and short training" in result.stdout
