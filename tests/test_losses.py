import pytest
import torch

from hfdistill.losses import alignment_loss, hint_loss, in_batch_ranking_loss


@pytest.mark.parametrize("loss", ["mse", "cosine", "mse+cosine", "l2"])
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
    assert alignment_loss(student, teacher, "mse+cosine").item() == pytest.approx(1.25)
    # distances: sqrt(2) and 1
    assert alignment_loss(student, teacher, "l2").item() == pytest.approx((2**0.5 + 1) / 2)


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


def test_hint_loss_averages_real_tokens_then_layer_pairs():
    mask = torch.tensor([[1, 1, 0]])
    teacher = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]])
    student = torch.tensor([[[0.0, 3.0], [2.0, 0.0], [0.0, 5.0]]])  # cosines 0 and 1; the third token is padding
    assert hint_loss([teacher * 4], [teacher], mask).item() == pytest.approx(0.0, abs=1e-6)  # scale-free
    assert hint_loss([student], [teacher], mask).item() == pytest.approx(0.5)
    assert hint_loss([teacher, student], [teacher, teacher], mask).item() == pytest.approx(0.25)
    padded = student.clone()
    padded[0, 2] = torch.tensor([-7.0, 1.0])
    assert hint_loss([padded], [teacher], mask).item() == pytest.approx(0.5)


def test_hint_loss_rejects_unpaired_states():
    state = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="matching non-empty lists"):
        hint_loss([state, state], [state], torch.ones(2, 3))
    with pytest.raises(ValueError, match="differ"):
        hint_loss([state], [torch.randn(2, 3, 5)], torch.ones(2, 3))


def test_in_batch_ranking_loss_is_the_kl_between_score_distributions():
    teacher = torch.eye(2)
    assert in_batch_ranking_loss(teacher, teacher).item() == pytest.approx(0.0, abs=1e-6)
    # the student swaps the two queries: each row's scores over the teacher bank are reversed
    student = teacher.flip(0)
    p = torch.softmax(torch.tensor([1.0, 0.0]), dim=0)  # temperature 1
    kl = (p * (p.log() - p.flip(0).log())).sum()
    assert in_batch_ranking_loss(student, teacher, temperature=1.0).item() == pytest.approx(kl.item())
    # a lower temperature sharpens the teacher's scores, so the same mistake costs more
    assert in_batch_ranking_loss(student, teacher, temperature=0.5) > in_batch_ranking_loss(student, teacher, 1.0)


def test_in_batch_ranking_loss_rejects_a_non_positive_temperature():
    with pytest.raises(ValueError, match="temperature must be > 0, got 0"):
        in_batch_ranking_loss(torch.eye(2), torch.eye(2), temperature=0)
