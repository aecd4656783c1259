import builtins
import importlib.util
import json
import os

import pytest
import torch

from hfdistill import from_teacher
from hfdistill.export import OnnxQueryEncoder, check_export, export_query_encoder
from tests.conftest import TEACHERS, run_in_process, run_script, write_st_teacher

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def test_exported_query_encoders_match_the_torch_student(tmp_path, family_teacher, queries):
    """fp32 ONNX to 1e-4; int8 weights (per channel, matrix products only) keep cosine >= 0.85: the bound leaves
    room for tiny random models (hidden size 32), whose int8 error is far larger than a real student's and moves
    with onnxruntime's releases (a real student's: `test_int8_export_of_a_real_student`). The folder
    is the query side as a sentence-transformers model, and the graph's token states are what its `Transformer`
    gives: what sentence-transformers' ONNX backend reads and pools."""
    import onnxruntime
    from sentence_transformers import SentenceTransformer

    name, teacher = family_teacher
    prompt_free = {"student_query_prompt": ""} if name.startswith("qwen3") else {}
    model = from_teacher(teacher, [0, 3], **prompt_free)
    with torch.no_grad():
        for p in model.query_encoder.parameters():
            p.add_(torch.randn_like(p) * 0.02)  # a student that is not the teacher's copy
    torch_embeddings = model.encode_queries(queries[:64])
    export_query_encoder(model, tmp_path / "int8", quantize="int8")  # writes the fp32 graph and its int8 version
    fp32 = OnnxQueryEncoder(tmp_path / "int8", file_name="onnx/model.onnx").encode_queries(queries[:64], batch_size=16)
    torch.testing.assert_close(fp32, torch_embeddings, atol=1e-4, rtol=1e-4)
    int8 = OnnxQueryEncoder(tmp_path / "int8").encode_queries(queries[:64], batch_size=16)
    assert torch.nn.functional.cosine_similarity(int8, torch_embeddings).min() > 0.85
    config = json.loads((tmp_path / "int8" / "query_encoder.json").read_text())
    assert config["file_name"] == "onnx/model_qint8.onnx" and config["prompt"] == model.config.student_prompt
    view = SentenceTransformer(str(tmp_path / "int8"))
    for encode in (view.encode, view.encode_query):  # the student's prompt is the default
        torch.testing.assert_close(encode(queries[:64], convert_to_tensor=True), torch_embeddings, atol=1e-5, rtol=0)
    features = view.tokenize([model.config.student_prompt + query for query in queries[:16]])
    session = onnxruntime.InferenceSession(str(tmp_path / "int8" / "onnx" / "model.onnx"))
    inputs = {name: features[name].numpy() for name in ("input_ids", "attention_mask")}
    token_states = torch.from_numpy(session.run(["last_hidden_state"], inputs)[0])
    with torch.no_grad():
        expected = view[0](features)["token_embeddings"]
    mask = features["attention_mask"].bool()
    torch.testing.assert_close(token_states[mask], expected[mask], atol=1e-4, rtol=1e-4)


def test_a_student_sentence_transformers_cannot_express_still_exports(tmp_path, queries, caplog):

    family, pooling, dense, prompts = TEACHERS["modernbert"]
    teacher = write_st_teacher(tmp_path / "teacher", family, pooling, dense, prompts=prompts)
    student = from_teacher(teacher, [1, 3])  # ModernBERT's layer 0 has no attention norm
    export_query_encoder(student, tmp_path / "onnx")
    assert "holds no sentence-transformers model" in caplog.text and "attn_norm" in caplog.text
    assert not (tmp_path / "onnx" / "modules.json").exists()
    exported = OnnxQueryEncoder(tmp_path / "onnx").encode_queries(queries[:32])
    torch.testing.assert_close(exported, student.encode_queries(queries[:32]), atol=1e-4, rtol=1e-4)


def test_export_errors_before_any_work(tmp_path, tiny_teacher, monkeypatch):
    with pytest.raises(ValueError, match=r"Unknown backend 'tflite'; choose one of \('onnx', 'static', 'model2vec'\)"):
        check_export("tflite", None)
    with pytest.raises(ValueError, match=r"Unknown quantization 'int4' for backend 'onnx'; choose one of \('int8',\)"):
        check_export("onnx", "int4")
    with pytest.raises(ValueError, match=r"side must be one of \('student', 'teacher'\), got 'document'"):
        check_export("onnx", None, "document")
    with pytest.raises(ValueError, match="is not an exported query encoder"):
        OnnxQueryEncoder(tmp_path)
    result = run_in_process(["recipes/export.py", "--model", tiny_teacher, "--output_dir", str(tmp_path / "out")],
                            check=False)  # fmt: skip
    assert result.returncode == 1 and "is not an hfdistill student (model_type='bert')" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
    real_import = builtins.__import__

    def without_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_onnxruntime)
    with pytest.raises(ImportError, match=r"need onnxruntime: pip install 'hfdistill\[onnx\]'"):
        check_export("onnx", "int8")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *args: None if name == "model2vec" else find_spec(name, *args)
    )
    with pytest.raises(ImportError, match=r"--backend model2vec needs model2vec: pip install 'hfdistill\[static\]'"):
        check_export("model2vec", None)


def test_export_recipe_writes_a_loadable_int8_encoder(tmp_path, tiny_student, queries):
    tiny_student.save_pretrained(tmp_path / "student")
    result = run_script(["recipes/export.py", "--model", str(tmp_path / "student"), "--quantize", "int8",
                         "--output_dir", str(tmp_path / "onnx")], ENV)  # fmt: skip
    for noise in ("TracerWarning", "pre-processing before quantization", "aten::index"):
        assert noise not in result.stderr  # only what a user acts on
    loaded = run_script(["-c", f"from sentence_transformers import SentenceTransformer; SentenceTransformer("
                               f"{str(tmp_path / 'onnx')!r}, device='cpu')"], ENV)  # fmt: skip
    assert "MISSING" not in loaded.stderr + loaded.stdout  # the pooler the encoder never had is not reported
    encoder = OnnxQueryEncoder(tmp_path / "onnx", num_threads=1)
    exported, student = encoder.encode_queries(queries), tiny_student.encode_queries(queries)
    assert torch.nn.functional.cosine_similarity(exported, student).min() > 0.98
    teacher_side = export_query_encoder(
        tiny_student, tmp_path / "teacher", side="teacher"
    )  # the side-by-side baseline
    teacher_onnx = OnnxQueryEncoder(teacher_side.parents[1]).encode_queries(queries)
    torch.testing.assert_close(teacher_onnx, tiny_student.encode_teacher_queries(queries), atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_int8_export_of_a_real_student(minilm, real_queries, tmp_path):
    student = from_teacher(minilm, [0, 5])
    export_query_encoder(student, tmp_path, quantize="int8")
    int8 = OnnxQueryEncoder(tmp_path).encode_queries(real_queries[:300], batch_size=32)
    cosine = torch.nn.functional.cosine_similarity(int8, student.encode_queries(real_queries[:300]))
    assert cosine.min() > 0.98 and cosine.mean() > 0.99
