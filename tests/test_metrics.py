import math

import evaluate
import pytest

from hfdistill.metrics import RETRIEVAL_NDCG


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(RETRIEVAL_NDCG)


def test_hand_computed_values(metric):
    predictions = [
        {"doc_ids": ["a", "b", "c"], "scores": [0.9, 0.5, 0.7]},  # ranking a, c, b
        {"doc_ids": ["x", "y"], "scores": [0.1, 0.2]},  # ranking y, x
    ]
    references = [
        {"doc_ids": ["b", "c"], "relevance": [2, 1]},
        {"doc_ids": ["z"], "relevance": [1]},  # never retrieved
    ]
    scores = metric.compute(predictions=predictions, references=references)
    dcg = 1 / math.log2(3) + 2 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert scores["ndcg_at_10"] == pytest.approx((dcg / idcg + 0.0) / 2)
    assert scores["mrr_at_10"] == pytest.approx((1 / 2 + 0.0) / 2)
    assert scores["recall_at_100"] == pytest.approx((1.0 + 0.0) / 2)


def test_cutoffs_and_ties(metric):
    doc_ids = [f"d{i}" for i in range(12)]
    scores = metric.compute(
        predictions=[{"doc_ids": doc_ids, "scores": [1.0] * 12}],  # all tied: doc id descending, d9 first
        references=[{"doc_ids": ["d9", "d0"], "relevance": [1, 1]}],
        k=1,
        recall_k=2,
    )
    assert scores == {"ndcg_at_1": pytest.approx(1.0), "mrr_at_1": 1.0, "recall_at_2": 0.5}
