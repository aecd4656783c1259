"""A cascade over one index: the student encodes every query, and the queries it is least sure of are encoded again by
the teacher, whose embeddings the index was built for. The student is sure of a query when its best document stands
clear of the next one (the `margin`), read from the search the student's answer needs anyway."""

import torch
from torch import nn

from .modeling_asymmetric import AsymmetricDualEncoder


def document_texts(corpus) -> list[str]:
    """The documents of a BEIR corpus (rows with `title` and `text`) as mteb gives them to an encoder: title and text
    joined, so their teacher embeddings are those the evaluation cached."""
    return [(f"{row.get('title') or ''} {row.get('text') or ''}").strip() for row in corpus]


def top_scores(queries: torch.Tensor, documents: torch.Tensor, k: int = 2, chunk_size: int = 65536) -> torch.Tensor:
    """The `k` best scores of each query over the documents, `(n_queries, k)`, best first; the documents are scored
    `chunk_size` at a time, so an index of millions needs no `(n_queries, n_documents)` matrix."""
    best = None
    for start in range(0, len(documents), chunk_size):
        scores = queries @ documents[start : start + chunk_size].T
        scores = scores if best is None else torch.cat([best, scores], dim=1)
        best = scores.topk(min(k, scores.shape[1]), dim=1).values
    return best


class CascadeQueryEncoder:
    """The student's query embeddings, with the teacher's in place of those the student is least sure of.

    Sure is measured against the index: the margin is the score of the student's best document minus that of its
    second best; a query whose margin is below `threshold` goes to the teacher's query encoder. Set the threshold from
    a routing rate on the user's own queries (no labels needed) with `calibrate`. The mean cost of a query is then the
    student's plus the routing rate times the teacher's. After each `encode_queries`, `routed` says which queries the
    teacher encoded.

    Args:
        model (`AsymmetricDualEncoder`):
            The student and its teacher; the teacher encodes the routed queries (with its query prompt).
        document_embeddings (`torch.Tensor`):
            The index, `(n_documents, d)`, as the teacher embedded it (`model.encode_documents`), at least 2 documents.
        threshold (`float`, *optional*):
            Queries whose margin is below it go to the teacher; `calibrate` sets it. None until set.
        query_encoder (*optional*):
            Encodes the student's queries instead of its PyTorch route: an ONNX or static export of it
            (`query_encoders.load_query_encoder`).
    """

    backend = "cascade"

    def __init__(
        self,
        model: AsymmetricDualEncoder,
        document_embeddings: torch.Tensor,
        threshold: float | None = None,
        query_encoder=None,
    ):
        dim = model.config.embedding_dim
        if document_embeddings.ndim != 2 or document_embeddings.shape[1] != dim or len(document_embeddings) < 2:
            raise ValueError(
                f"document_embeddings must be (n_documents >= 2, {dim}), the teacher's index; got "
                f"{tuple(document_embeddings.shape)}."
            )
        if query_encoder is not None and (given := query_encoder.config["embedding_dim"]) != dim:
            raise ValueError(f"The query encoder gives {given}-d embeddings and the teacher's index is {dim}-d.")
        self.model, self.threshold = model, threshold
        self.cosine = model.config.similarity == "cosine"
        documents = document_embeddings.float()
        self.documents = nn.functional.normalize(documents, dim=-1) if self.cosine else documents
        self.encode_student = query_encoder.encode_queries if query_encoder is not None else model.encode_queries
        self.routed = torch.zeros(0, dtype=torch.bool)
        self.config = {"backend": self.backend, "embedding_dim": dim}

    def margin(self, student_embeddings: torch.Tensor) -> torch.Tensor:
        """How sure the student is of each query: its best document's score minus its second best's."""
        queries = student_embeddings.float()
        top = top_scores(nn.functional.normalize(queries, dim=-1) if self.cosine else queries, self.documents)
        return top[:, 0] - top[:, 1]

    def calibrate(self, queries: list[str], routing_rate: float, batch_size: int = 32) -> float:
        """Sets and returns the threshold that sends `routing_rate` of `queries` (the user's own, unlabeled: a sample
        of the traffic the cascade will serve) to the teacher."""
        if not 0 <= routing_rate <= 1:
            raise ValueError(f"routing_rate is a share of the queries, from 0 to 1; got {routing_rate}.")
        if not queries:
            raise ValueError("calibrate needs queries: a sample of those the cascade will serve.")
        values = self.margin(self.encode_student(queries, batch_size)).sort().values
        routed = round(routing_rate * len(values))
        self.threshold = float(values[routed]) if routed < len(values) else float("inf")
        return self.threshold

    def encode_queries(self, queries: list[str], batch_size: int = 32, show_progress_bar: bool = False):
        """Embed queries: the student's embedding, or the teacher's where the student's margin is below the threshold;
        a `(n, d)` float tensor on CPU."""
        if self.threshold is None:
            raise ValueError("The cascade has no threshold: call calibrate(queries, routing_rate) or give threshold.")
        embeddings = self.encode_student(queries, batch_size=batch_size, show_progress_bar=show_progress_bar)
        embeddings = embeddings.float().clone()  # a normal tensor: the routed rows are written in place
        self.routed = self.margin(embeddings) < self.threshold
        if self.routed.any():
            routed = [query for query, sent in zip(queries, self.routed.tolist()) if sent]
            embeddings[self.routed] = self.model.encode_teacher_queries(routed, batch_size).float()
        return embeddings
