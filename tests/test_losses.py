import pytest
import torch

from hfdistill.losses import alignment_loss


@pytest.mark.parametrize("loss", ["mse", "cosine"])
def test_zero_on_identical_embeddings(loss):
    x = torch.randn(5, 8)
    assert alignment_loss(x, x.clone(), loss).item() == pytest.approx(0.0, abs=1e-6)


def test_reference_values():
    student = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    teacher = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    # squared errors: row 1: 1 + 1, row 2: 0 + 1 -> mean over 4 elements = 0.75
    assert alignment_loss(student, teacher, "mse").item() == pytest.approx(0.75)
    # cosines: 0 and 1 -> mean(1 - cos) = 0.5
    assert alignment_loss(student, teacher, "cosine").item() == pytest.approx(0.5)


def test_gradient_flows_to_student_only():
    student = torch.randn(3, 4, requires_grad=True)
    teacher = torch.randn(3, 4)
    alignment_loss(student, teacher).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_errors():
    with pytest.raises(ValueError, match="Unknown loss 'kl'"):
        alignment_loss(torch.zeros(2, 3), torch.zeros(2, 3), "kl")
    with pytest.raises(ValueError, match=r"student \(2, 3\) and teacher \(2, 4\)"):
        alignment_loss(torch.zeros(2, 3), torch.zeros(2, 4))
