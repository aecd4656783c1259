"""Embedding-alignment losses between student and teacher query embeddings (pure functions)."""

import torch
from torch.nn import functional as F

LOSSES = ("mse", "cosine", "mse+cosine", "l2")


def alignment_loss(student: torch.Tensor, teacher: torch.Tensor, loss: str = "mse") -> torch.Tensor:
    """Mean loss over a batch of `(batch, dim)` embeddings.

    `mse` is the paper's element-wise mean squared error, `cosine` is 1 - cos, `mse+cosine` their sum, and `l2` the
    mean Euclidean distance.
    """
    if loss not in LOSSES:
        raise ValueError(f"Unknown loss {loss!r}; choose one of {LOSSES}.")
    if student.shape != teacher.shape or student.dim() != 2:
        raise ValueError(
            f"Expected student and teacher embeddings of the same (batch, dim) shape, got student "
            f"{tuple(student.shape)} and teacher {tuple(teacher.shape)}."
        )
    teacher = teacher.to(student.dtype)
    mse = F.mse_loss(student, teacher)
    if loss == "mse":
        return mse
    if loss == "l2":
        return (student - teacher).norm(dim=-1).mean()
    cosine = (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()
    return cosine if loss == "cosine" else mse + cosine
