"""Embedding-alignment losses between student and teacher query embeddings (pure functions)."""

import torch
from torch.nn import functional as F

LOSSES = ("mse", "cosine")


def alignment_loss(student: torch.Tensor, teacher: torch.Tensor, loss: str = "cosine") -> torch.Tensor:
    """Mean loss over a batch of `(batch, dim)` embeddings: `cosine` is 1 - cos, `mse` the paper's element-wise mean
    squared error."""
    if loss not in LOSSES:
        raise ValueError(f"Unknown loss {loss!r}; choose one of {LOSSES}.")
    if student.shape != teacher.shape or student.dim() != 2:
        raise ValueError(
            f"Expected student and teacher embeddings of the same (batch, dim) shape, got student "
            f"{tuple(student.shape)} and teacher {tuple(teacher.shape)}."
        )
    teacher = teacher.to(student.dtype)
    if loss == "mse":
        return F.mse_loss(student, teacher)
    return (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()
