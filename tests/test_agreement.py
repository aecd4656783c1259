import pytest
import torch

from hfdistill import from_teacher
from hfdistill.agreement import agreement
from hfdistill.modeling_asymmetric import layer_stack


def test_the_teacher_itself_agrees_fully_and_a_worse_student_less(tiny_teacher, queries, tmp_path):
    full = from_teacher(tiny_teacher, [0, 1, 2, 3])  # the teacher's own layers: the teacher as its student
    report = agreement(full, queries[:20], queries[100:200], tmp_path)
    assert report == {"queries": 20, "documents": 100, "k": 10, "top_k_overlap": pytest.approx(1.0),
                      "mean_query_cosine": pytest.approx(1.0, abs=1e-5)}  # fmt: skip
    worse = from_teacher(tiny_teacher, [0, 3])
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in layer_stack(worse.query_encoder).parameters():
            parameter.add_(torch.randn_like(parameter) * 0.5)
    report = agreement(worse, queries[:20], queries[100:200], tmp_path)
    student, teacher = worse.encode_queries(queries[:20]), worse.encode_teacher_queries(queries[:20])
    index = torch.nn.functional.normalize(worse.encode_documents(queries[100:200]), dim=-1)
    by_hand = [len(set((s @ index.T).topk(10).indices.tolist()) & set((t @ index.T).topk(10).indices.tolist())) / 10
               for s, t in zip(student, teacher)]  # fmt: skip
    assert report["top_k_overlap"] == pytest.approx(sum(by_hand) / 20) and report["top_k_overlap"] < 0.95
    assert report["mean_query_cosine"] < 0.99
    with pytest.raises(ValueError, match="needs queries and at least k=10 documents, got 20 queries and 5"):
        agreement(worse, queries[:20], queries[:5], tmp_path)
