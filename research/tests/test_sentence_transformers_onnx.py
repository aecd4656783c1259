import os

import numpy as np
import torch

from hfdistill.export import OnnxQueryEncoder
from tests.conftest import run_script

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def test_the_reference_half_of_the_onnx_check(tmp_path, tiny_student, queries):
    """Its other half needs optimum-onnx, in an environment of its own."""
    tiny_student.save_pretrained(tmp_path / "student")
    run_script(["recipes/export.py", "--model", str(tmp_path / "student"), "--quantize", "int8", "--output_dir",
                str(tmp_path / "onnx")], ENV)  # fmt: skip
    exported = OnnxQueryEncoder(tmp_path / "onnx", num_threads=1).encode_queries(queries)
    student = tiny_student.encode_queries(queries)
    (tmp_path / "queries.txt").write_text("\n".join(queries))
    check = ["-m", "research.sentence_transformers_onnx", "reference", "--export_dir", str(tmp_path / "onnx")]
    run_script([*check, "--queries", str(tmp_path / "queries.txt"), "--output", str(tmp_path / "reference.npz")], ENV)
    reference = np.load(tmp_path / "reference.npz")
    assert reference["queries"].tolist() == queries
    np.testing.assert_allclose(reference["torch"], student.numpy(), atol=1e-5)
    np.testing.assert_allclose(reference["onnx/model.onnx"], student.numpy(), atol=1e-4)
    np.testing.assert_allclose(reference["onnx/model_qint8.onnx"], exported.numpy(), atol=1e-6)
    torch.testing.assert_close(torch.from_numpy(reference["torch"]), student, atol=1e-5, rtol=0)
