"""A check before publishing: how closely the student follows its teacher on the user's own queries and documents,
without relevance labels. For each query, the documents the student's embedding ranks in its top k are compared with
those the teacher's ranks there; the query embeddings themselves are compared by cosine."""

import os

import torch
from torch import nn

from .modeling_asymmetric import AsymmetricDualEncoder
from .teacher_pass import cached_teacher_embeddings

AGREEMENT_FILE = "agreement.json"


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
        raise ValueError(f"The agreement check needs queries and at least k={k} documents, got {len(queries)} "
                         f"queries and {len(documents)} documents.")  # fmt: skip
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


def check_before_publishing(model: AsymmetricDualEncoder, args, cache_dir: str | os.PathLike) -> dict | None:
    """The agreement of `args` (`PublishCheckArguments`) on its sample of queries and documents, or None when it
    names none; a `ValueError` when the top-10 overlap is below `min_top10_overlap` and `push_anyway` is not set."""
    from .data import load_queries

    if args.check_queries is None:
        return None
    queries = load_queries(args.check_queries, column=args.check_column)[: args.check_max_queries]
    documents = load_queries(args.check_documents, column=args.check_column)[: args.check_max_documents]
    report = agreement(model, queries, documents, cache_dir)
    print(f"Agreement with the teacher on {report['queries']} queries over {report['documents']} documents: top-10 "
          f"overlap {report['top_k_overlap']:.1%}, mean query cosine {report['mean_query_cosine']:.4f}")  # fmt: skip
    if args.min_top10_overlap is not None and report["top_k_overlap"] < args.min_top10_overlap:
        message = (f"the student's top-10 overlap with its teacher, {report['top_k_overlap']:.1%}, is below "
                   f"--min_top10_overlap {args.min_top10_overlap:.1%}")  # fmt: skip
        if not args.push_anyway:
            raise ValueError(f"Not pushed: {message}; --push_anyway true pushes it anyway.")
        print(f"Pushing anyway: {message}.")
    return report
