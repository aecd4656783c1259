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


def in_batch_ranking_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """KL divergence from the teacher's to the student's score distribution over the batch's teacher embeddings.

    Retrieval ranks documents by the inner product of a query with teacher embeddings; the batch's teacher embeddings
    (each query's own included) stand in for that index, so the student learns the teacher's ranking, not only its
    vector. The default temperature, 0.05, is the scale (20) both offline teachers were trained with.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    teacher = teacher.to(student.dtype)
    student_log_probs = F.log_softmax(student @ teacher.T / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher @ teacher.T / temperature, dim=-1)
    return F.kl_div(student_log_probs, teacher_log_probs, log_target=True, reduction="batchmean")


def hint_loss(
    student_states: list[torch.Tensor], teacher_states: list[torch.Tensor], attention_mask: torch.Tensor
) -> torch.Tensor:
    """Intermediate-layer hints: 1 - cos between student and teacher token states, averaged over real tokens and pairs.

    Each `(batch, seq, hidden)` student state is paired with the teacher state it stands in for (see
    `AsymmetricDualEncoderConfig.hint_targets`). Cosine, not MSE, for the reason `cosine` beats `mse` on embeddings:
    it is scale-free, so a few large-magnitude dimensions of the hidden states do not dominate the gradient.
    """
    if len(student_states) != len(teacher_states) or not student_states:
        raise ValueError(
            f"Expected matching non-empty lists of states, got {len(student_states)} and {len(teacher_states)}."
        )
    mask = attention_mask.to(student_states[0].dtype)
    losses = []
    for student, teacher in zip(student_states, teacher_states):
        if student.shape != teacher.shape:
            raise ValueError(f"Student state {tuple(student.shape)} and teacher state {tuple(teacher.shape)} differ.")
        distance = 1 - F.cosine_similarity(student, teacher.to(student.dtype), dim=-1)
        losses.append((distance * mask).sum() / mask.sum().clamp(min=1))
    return torch.stack(losses).mean()
