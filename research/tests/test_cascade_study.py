import pytest
import torch

from research.cascade import group_retention, routed_ndcg, untrained_tokens


def test_routing_replaces_the_first_queries_of_the_order_by_the_teachers_scores():
    student, teacher = [0.2, 0.9, 0.5, 0.0], [0.8, 0.9, 0.6, 1.0]
    assert routed_ndcg(student, teacher, [3, 0, 2, 1], 0) == pytest.approx(0.4)
    assert routed_ndcg(student, teacher, [3, 0, 2, 1], 0.25) == pytest.approx((0.2 + 0.9 + 0.5 + 1.0) / 4)
    assert routed_ndcg(student, teacher, [3, 0, 2, 1], 0.5) == pytest.approx((0.8 + 0.9 + 0.5 + 1.0) / 4)
    assert routed_ndcg(student, teacher, [1, 2, 0, 3], 1) == pytest.approx(0.825)


def test_groups_average_the_tasks_they_have_at_each_rate():
    tasks = {"scifact": {"curves": {"margin": [0.8, 1.0]}}, "msmarco-sub5k": {"curves": {"margin": [0.9, 1.0]}},
             "xquad-de": {"curves": {"margin": [0.5, 0.7]}}}  # fmt: skip
    assert group_retention(tasks, "margin") == {"dev": pytest.approx([0.85, 1.0]), "xquad": pytest.approx([0.5, 0.7])}


def test_untrained_tokens_are_the_rows_the_student_still_shares_with_its_teacher(tiny_student):
    assert untrained_tokens(tiny_student).all()
    with torch.no_grad():
        tiny_student.query_encoder.get_input_embeddings().weight[[5, 7]] += 0.1
    unseen = untrained_tokens(tiny_student)
    assert not unseen[5] and not unseen[7] and int(unseen.sum()) == len(unseen) - 2
