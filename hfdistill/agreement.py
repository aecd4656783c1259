"""A check before publishing: how closely the student follows its teacher on the user's own queries and documents,
without relevance labels. For each query, the documents the student's embedding ranks in its top k are compared with
those the teacher's ranks there; the query embeddings themselves are compared by cosine."""

import os

import torch
from torch import nn

from .modeling_asymmetric import AsymmetricDualEncoder
from .provenance import source_name
from .teacher_pass import cached_teacher_embeddings


@torch.inference_mode()
def agreement(
    model: AsymmetricDualEncoder,
    queries: list[str],
    documents: list[str],
    cache_dir: str | os.PathLike,
    k: int = 10,
    batch_size: int = 64,
) -> dict:
    """`{"queries", "documents", "k", "top_k_overlap", "mean_query_cosine"}`: the mean share of the teacher's top `k`
    documents that the student also ranks in its top `k` (documents embedded by the teacher, with its prompts, and
    cached), and the mean cosine of the student's and the teacher's embedding of each query."""
    if not queries or len(documents) < k:
        raise ValueError(
            f"The agreement check needs queries and at least k={k} documents, got {len(queries)} "
            f"queries and {len(documents)} documents."
        )
    index = cached_teacher_embeddings(model, documents, cache_dir, batch_size, prompt_type="document")
    teacher = cached_teacher_embeddings(model, queries, cache_dir, batch_size)
    student = model.encode_queries(queries, batch_size)
    if model.config.similarity == "cosine":
        index = nn.functional.normalize(index.float(), dim=-1)
    found = (student @ index.T).topk(k, dim=-1).indices
    wanted = (teacher.float() @ index.T).topk(k, dim=-1).indices
    shared = (found.unsqueeze(-1) == wanted.unsqueeze(-2)).any(-1).float().sum(-1) / k
    return {
        "queries": len(queries),
        "documents": len(documents),
        "k": k,
        "top_k_overlap": float(shared.mean()),
        "mean_query_cosine": float(nn.functional.cosine_similarity(student, teacher.float(), dim=-1).mean()),
    }


def check_sets(args) -> list[tuple[str, str]]:
    """The (queries, documents) sources of a `PublishCheckArguments`: each query set against the document set of the
    same position, or all against the one document set given."""
    documents = args.check_documents
    return [
        (queries, documents[0] if len(documents) == 1 else documents[i])
        for i, queries in enumerate(args.check_queries)
    ]


def check_before_publishing(model: AsymmetricDualEncoder, args, cache_dir: str | os.PathLike) -> list[dict] | None:
    """The agreement of `args` (`PublishCheckArguments`) on each of its query sets (a language, a domain, ...) against
    its documents, or None when it names none; a `ValueError` when a set's top-10 overlap is below
    `min_top10_overlap` and `push_anyway` is not set. Every set is read before any is embedded."""
    from .data import load_queries

    if not args.check_queries:
        return None
    data = [
        (
            query_set,
            document_set,
            load_queries(query_set, column=args.check_column)[: args.check_max_queries],
            load_queries(document_set, column=args.check_column)[: args.check_max_documents],
        )
        for query_set, document_set in check_sets(args)
    ]
    reports, below = [], []
    for query_set, document_set, queries, documents in data:
        report = {
            "query_set": source_name(query_set),
            "document_set": source_name(document_set),
            **agreement(model, queries, documents, cache_dir),
        }
        print(
            f"Agreement with the teacher on {report['query_set']} ({report['queries']} queries over "
            f"{report['documents']} documents): top-10 overlap {report['top_k_overlap']:.1%}, mean query cosine "
            f"{report['mean_query_cosine']:.4f}"
        )
        if args.min_top10_overlap is not None and report["top_k_overlap"] < args.min_top10_overlap:
            below.append(f"{report['top_k_overlap']:.1%} on {report['query_set']}")
        reports.append(report)
    if below:
        message = (
            f"the student's top-10 overlap with its teacher is below --min_top10_overlap "
            f"{args.min_top10_overlap:.1%}: {', '.join(below)}"
        )
        if not args.push_anyway:
            raise ValueError(f"Not pushed: {message}; --push_anyway true pushes it anyway.")
        print(f"Pushing anyway: {message}.")
    return reports
