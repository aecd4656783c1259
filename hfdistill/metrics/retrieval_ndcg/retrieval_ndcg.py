"""nDCG@k, recall@k and MRR@k of a retrieval run against graded qrels, as trec_eval (and so mteb) computes them.

Load with `evaluate.load(hfdistill.metrics.RETRIEVAL_NDCG)`. One example per query:
prediction = {"doc_ids": [...], "scores": [...]} (the run), reference = {"doc_ids": [...], "relevance": [...]}.
"""

import math

import datasets
import evaluate

_DESCRIPTION = "Mean nDCG@k (linear gains), recall@k and MRR@k over queries; ties broken by doc id, descending."
_KWARGS = """
Args:
    predictions: per query, {"doc_ids": list[str], "scores": list[float]}: the retrieved documents and their scores.
    references: per query, {"doc_ids": list[str], "relevance": list[int]}: the judged documents (qrels).
    k: cut-off of nDCG and MRR (default 10). recall_k: cut-off of recall (default 100).
Returns:
    ndcg_at_{k}, mrr_at_{k}, recall_at_{recall_k}: means over queries.
"""


def _ranking(doc_ids: list[str], scores: list[float]) -> list[str]:
    return [doc for _, doc in sorted(zip(scores, doc_ids), reverse=True)]


def _ndcg(ranked: list[str], qrels: dict[str, int], k: int) -> float:
    dcg = sum(qrels.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:k]))
    ideal = sorted((g for g in qrels.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def _mrr(ranked: list[str], qrels: dict[str, int], k: int) -> float:
    return next((1.0 / (rank + 1) for rank, doc in enumerate(ranked[:k]) if qrels.get(doc, 0) > 0), 0.0)


def _recall(ranked: list[str], qrels: dict[str, int], k: int) -> float:
    relevant = {doc for doc, g in qrels.items() if g > 0}
    return len(relevant & set(ranked[:k])) / len(relevant) if relevant else 0.0


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class RetrievalNdcg(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {
                    "predictions": {
                        "doc_ids": datasets.Sequence(datasets.Value("string")),
                        "scores": datasets.Sequence(datasets.Value("float64")),
                    },
                    "references": {
                        "doc_ids": datasets.Sequence(datasets.Value("string")),
                        "relevance": datasets.Sequence(datasets.Value("int32")),
                    },
                }
            ),
        )

    def _compute(self, predictions, references, k: int = 10, recall_k: int = 100) -> dict[str, float]:
        totals = {f"ndcg_at_{k}": 0.0, f"mrr_at_{k}": 0.0, f"recall_at_{recall_k}": 0.0}
        for prediction, reference in zip(predictions, references):
            ranked = _ranking(prediction["doc_ids"], prediction["scores"])
            qrels = dict(zip(reference["doc_ids"], reference["relevance"]))
            totals[f"ndcg_at_{k}"] += _ndcg(ranked, qrels, k)
            totals[f"mrr_at_{k}"] += _mrr(ranked, qrels, k)
            totals[f"recall_at_{recall_k}"] += _recall(ranked, qrels, recall_k)
        return {name: total / max(len(predictions), 1) for name, total in totals.items()}
