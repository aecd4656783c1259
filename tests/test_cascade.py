import pytest
import torch

from hfdistill.cascade import CascadeQueryEncoder, top_scores


def test_top_scores_in_chunks_are_those_of_the_whole_matrix():
    torch.manual_seed(0)
    queries, documents = torch.randn(7, 5), torch.randn(23, 5)
    whole = (queries @ documents.T).topk(3, dim=1).values
    assert torch.allclose(top_scores(queries, documents, k=3, chunk_size=4), whole, atol=1e-6)
    assert torch.allclose(top_scores(queries, documents, k=2, chunk_size=1), whole[:, :2], atol=1e-6)


def test_the_least_sure_share_goes_to_the_teacher_and_the_rest_stays_the_students(tiny_student, queries):
    documents = tiny_student.encode_documents(queries[100:160])
    cascade = CascadeQueryEncoder(tiny_student, documents)
    served = queries[:40]
    threshold = cascade.calibrate(served, 0.25)
    embeddings = cascade.encode_queries(served, batch_size=8)
    student, teacher = tiny_student.encode_queries(served), tiny_student.encode_teacher_queries(served)
    index = torch.nn.functional.normalize(documents, dim=-1)
    best = (student @ index.T).topk(2, dim=1).values
    by_hand = best[:, 0] - best[:, 1]
    least_sure = set(by_hand.argsort()[:10].tolist())
    assert set(cascade.routed.nonzero().flatten().tolist()) == least_sure
    assert threshold == pytest.approx(float(by_hand.sort().values[10]), abs=1e-5)
    for i in range(40):
        assert torch.allclose(embeddings[i], teacher[i] if i in least_sure else student[i], atol=1e-5)
    assert not torch.allclose(student[sorted(least_sure)], teacher[sorted(least_sure)], atol=1e-3)
    again = CascadeQueryEncoder(tiny_student, documents, threshold=threshold)  # a saved threshold
    assert torch.allclose(again.encode_queries(served), embeddings, atol=1e-6)


def test_routing_none_or_all_and_another_student_query_encoder(tiny_student, queries):
    documents = tiny_student.encode_documents(queries[100:130])
    served = queries[:20]

    class Doubled:  # any query encoder of the student: an ONNX or static export in practice
        config = {"embedding_dim": tiny_student.config.embedding_dim}

        def encode_queries(self, texts, batch_size=32, show_progress_bar=False):
            return tiny_student.encode_queries(texts, batch_size) * 2

    cascade = CascadeQueryEncoder(tiny_student, documents, query_encoder=Doubled())
    cascade.calibrate(served, 0)
    assert torch.allclose(cascade.encode_queries(served), tiny_student.encode_queries(served) * 2, atol=1e-5)
    assert not cascade.routed.any()
    assert cascade.calibrate(served, 1) == float("inf")
    assert torch.allclose(cascade.encode_queries(served), tiny_student.encode_teacher_queries(served), atol=1e-5)
    assert cascade.routed.all()


def test_bad_settings_are_refused_before_encoding(tiny_student, queries):
    documents = tiny_student.encode_documents(queries[:10])
    dim = tiny_student.config.embedding_dim
    with pytest.raises(ValueError, match=rf"must be \(n_documents >= 2, {dim}\), the teacher's index; got \(10, 3\)"):
        CascadeQueryEncoder(tiny_student, documents[:, :3])
    with pytest.raises(ValueError, match=rf"got \(1, {dim}\)"):
        CascadeQueryEncoder(tiny_student, documents[:1])
    other = type("Other", (), {"config": {"embedding_dim": dim + 1}})()
    with pytest.raises(ValueError, match=rf"gives {dim + 1}-d embeddings and the teacher's index is {dim}-d"):
        CascadeQueryEncoder(tiny_student, documents, query_encoder=other)
    cascade = CascadeQueryEncoder(tiny_student, documents)
    with pytest.raises(ValueError, match="has no threshold: call calibrate"):
        cascade.encode_queries(queries[:3])
    with pytest.raises(ValueError, match="from 0 to 1; got 10"):
        cascade.calibrate(queries[:3], 10)
    with pytest.raises(ValueError, match="calibrate needs queries"):
        cascade.calibrate([], 0.1)
