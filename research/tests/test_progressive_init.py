import torch

from hfdistill import AsymmetricDualEncoder, from_teacher
from hfdistill.modeling_asymmetric import layer_stack
from tests.conftest import run_in_process, tiny_distill_args


def test_the_student_starts_from_the_trained_students_layers(tiny_teacher, queries, tmp_path):
    trained = from_teacher(tiny_teacher, [0, 1, 2, 3])
    with torch.no_grad():
        for parameter in trained.query_encoder.parameters():
            parameter.add_(torch.randn_like(parameter))  # stands in for training: away from the teacher
    trained.save_pretrained(tmp_path / "trained")
    distill = tiny_distill_args(tiny_teacher, queries, tmp_path, batch_size=8)[1:]
    run_in_process(["-m", "research.progressive_init", "--init_from", str(tmp_path / "trained"), "--init_layers", "0",
                    "3", "--", *distill, "--max_steps", "1", "--learning_rate", "1e-12", "--save_strategy", "no",
                    "--output_dir", str(tmp_path / "out")])  # fmt: skip
    student = AsymmetricDualEncoder.from_pretrained(tmp_path / "out")
    for new, old in ((0, 0), (1, 3)):  # one step at lr 1e-12 leaves the initial weights
        for a, b in zip(layer_stack(student.query_encoder)[new].parameters(),
                        layer_stack(trained.query_encoder)[old].parameters()):  # fmt: skip
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    torch.testing.assert_close(student.query_encoder.embeddings.word_embeddings.weight,
                               trained.query_encoder.embeddings.word_embeddings.weight, atol=1e-6, rtol=0)  # fmt: skip
