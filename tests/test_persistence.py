import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from hfdistill import AsymmetricDualEncoder, from_teacher, load_student
from hfdistill.persistence import ROUTES_FILE


def _query_weights(folder):
    structure = json.loads((folder / ROUTES_FILE).read_text())["structure"]
    return folder / structure["query"][0] / "model.safetensors"


def test_weights_with_damaged_bytes_are_refused_naming_the_file(tiny_student, tmp_path):
    tiny_student.save_pretrained(tmp_path)
    weights = _query_weights(tmp_path)
    data = bytearray(weights.read_bytes())
    data[-64:] = b"\xff" * 64  # NaN floats where values were
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"{weights.parent.name}/model.safetensors holds non-finite weights"):
        AsymmetricDualEncoder.from_pretrained(tmp_path)
    weights.write_bytes(bytes(data[: len(data) // 2]))  # truncated
    with pytest.raises(ValueError, match=r"model.safetensors: not a readable safetensors file"):
        load_student(str(tmp_path))


def test_a_config_edited_away_from_its_weights_is_named(tiny_student, tmp_path):
    tiny_student.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "student_layers": [1, 3]}))
    with pytest.raises(ValueError, match=r"says student_layers \[1, 3\], but the student's weights .* \[0, 3\]"):
        AsymmetricDualEncoder.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "student_layers": [0, 1, 3]}))
    with pytest.raises(ValueError, match=r"says student_layers \[0, 1, 3\], but the student's weights"):
        AsymmetricDualEncoder.from_pretrained(tmp_path)


def test_a_route_without_the_layer_record_is_checked_by_its_tensors(tiny_student, tmp_path):
    tiny_student.save_pretrained(tmp_path)
    route_config = _query_weights(tmp_path).parent / "config.json"
    record = json.loads(route_config.read_text())
    route_config.write_text(json.dumps({k: v for k, v in record.items() if k != "hfdistill_student_layers"}))
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "student_layers": [0, 1, 3]}))
    with pytest.raises(ValueError, match=r"model.safetensors does not hold the weights its config describes \("):
        AsymmetricDualEncoder.from_pretrained(tmp_path)


def test_a_transformers_only_student_is_checked_too(tiny_teacher, tmp_path):
    student = from_teacher(tiny_teacher, [0, 3], share_token_embeddings=True)
    student.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    broken = next(key for key in state if key.startswith("query_encoder.") and "dense.weight" in key)
    state[broken] = torch.full_like(state[broken], float("nan"))
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=rf"model.safetensors holds non-finite weights .*{broken}"):
        AsymmetricDualEncoder.from_pretrained(tmp_path)
    del state[broken]
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"model.safetensors does not hold the weights its config describes"):
        AsymmetricDualEncoder.from_pretrained(tmp_path)


def test_load_student_names_what_is_not_a_student(tiny_teacher, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'.*nowhere': no such folder"):
        load_student(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=r"is not an hfdistill student \(model_type='bert'\)"):
        load_student(tiny_teacher)


def test_every_plain_entry_point_gives_the_student(tiny_teacher, tmp_path):
    """SentenceTransformer(path).encode, transformers' feature-extraction pipeline and the model's forward all encode
    with the student; documents need encode_document / encode_documents."""
    import subprocess
    import sys
    import textwrap

    student = from_teacher(tiny_teacher, [0, 3], student_query_prompt="")
    with torch.no_grad():
        student.query_encoder.embeddings.word_embeddings.weight.mul_(1.3)
    student.save_pretrained(tmp_path / "student")
    texts = ["what is dense retrieval", "the cat of the city"]
    torch.save({"q": student.encode_queries(texts), "d": student.encode_documents(texts)}, tmp_path / "ref.pt")
    script = textwrap.dedent(f"""
        import sys, torch
        from sentence_transformers import SentenceTransformer
        from transformers import pipeline
        path, texts, ref = {str(tmp_path / "student")!r}, {texts!r}, torch.load({str(tmp_path / "ref.pt")!r})
        st = SentenceTransformer(path, device="cpu")
        torch.testing.assert_close(st.encode(texts, convert_to_tensor=True), ref["q"], atol=1e-5, rtol=0)
        torch.testing.assert_close(st.encode_document(texts, convert_to_tensor=True), ref["d"], atol=1e-5, rtol=0)
        extract = pipeline("feature-extraction", model=path, trust_remote_code=True, device="cpu")
        rows = torch.tensor([extract(text)[0] for text in texts])
        torch.testing.assert_close(rows, ref["q"], atol=1e-5, rtol=0)
        assert "hfdistill" not in sys.modules
        print("OK")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.stdout.strip().endswith("OK"), result.stderr[-3000:]


def test_a_student_trained_further_by_sentence_transformers_is_written_back_for_both_loaders(
    tiny_student, queries, tmp_path
):
    """sentence-transformers' own trainer (its Router's query route, the document route frozen) saves a folder
    without hfdistill's config and code; from_pretrained with the original's config reads it, save_pretrained writes
    both loaders' files again."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MSELoss
    from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    tiny_student.save_pretrained(tmp_path / "student")
    model = SentenceTransformer(str(tmp_path / "student"), device="cpu")
    router = model[0]
    for parameter in [p for module in router.sub_modules["document"] for p in module.parameters()]:
        parameter.requires_grad_(False)
    targets = tiny_student.encode_teacher_queries(queries[:64])
    data = Dataset.from_dict({"anchor": queries[:64], "label": targets.numpy().tolist()})
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "st-run"), max_steps=3, learning_rate=5e-3,
                                                per_device_train_batch_size=16, report_to="none", use_cpu=True,
                                                router_mapping={"anchor": "query"}, save_strategy="no")  # fmt: skip
    SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=MSELoss(model)).train()
    model.save(str(tmp_path / "st-saved"))
    assert not (tmp_path / "st-saved" / "modeling_asymmetric.py").exists()  # the AutoModel path is gone here
    again = AsymmetricDualEncoder.from_pretrained(tmp_path / "st-saved", config=str(tmp_path / "student"))
    expected = model.encode_query(queries[:5], convert_to_tensor=True)
    torch.testing.assert_close(again.encode_queries(queries[:5]), expected, atol=1e-5, rtol=0)
    assert (again.encode_queries(queries[:5]) - tiny_student.encode_queries(queries[:5])).abs().max() > 1e-3
    torch.testing.assert_close(again.encode_documents(queries[:5]), tiny_student.encode_documents(queries[:5]))
    again.save_pretrained(tmp_path / "written-back")
    reloaded = AsymmetricDualEncoder.from_pretrained(tmp_path / "written-back")
    torch.testing.assert_close(reloaded.encode_queries(queries[:5]), expected, atol=1e-5, rtol=0)
    assert (tmp_path / "written-back" / "modeling_asymmetric.py").is_file()


def test_saving_again_writes_the_current_weights_without_rebuilding_the_encoders(tiny_student, tmp_path, monkeypatch):
    from hfdistill import persistence

    built, build = [], persistence._transformer
    monkeypatch.setattr(persistence, "_transformer", lambda model, encoder, *a: built.append(a[0]) or
                        build(model, encoder, *a))  # fmt: skip
    tiny_student.save_pretrained(tmp_path / "first")
    with torch.no_grad():
        tiny_student.query_encoder.embeddings.word_embeddings.weight.mul_(1.5)
    tiny_student.save_pretrained(tmp_path / "second")
    assert built == ["query", "document"]  # once per side, not once per save
    texts = ["what is dense retrieval", "the cat"]
    second = AsymmetricDualEncoder.from_pretrained(tmp_path / "second").encode_queries(texts)
    torch.testing.assert_close(second, tiny_student.encode_queries(texts), atol=1e-6, rtol=0)
    first = AsymmetricDualEncoder.from_pretrained(tmp_path / "first").encode_queries(texts)
    assert (first - second).abs().max() > 1e-3


def test_a_saved_student_records_its_architecture(tiny_student, tmp_path):
    tiny_student.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["AsymmetricDualEncoder"]


def test_a_student_whose_teacher_was_trained_is_refused_by_the_loaders(tiny_student, queries, tmp_path):
    """The usual further training in sentence-transformers ((query, positive) pairs, MultipleNegativesRankingLoss,
    both routes mapped) moves the document route unless frozen: hfdistill's loader then refuses the result, in one
    line, instead of serving queries against an index the teacher no longer builds."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.trainer import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    tiny_student.save_pretrained(tmp_path / "student")
    reloaded = AsymmetricDualEncoder.from_pretrained(tmp_path / "student")  # its own teacher: accepted
    assert reloaded.config.teacher_weights_fingerprint == tiny_student.teacher_weights_fingerprint()
    model = SentenceTransformer(str(tmp_path / "student"), device="cpu")
    data = Dataset.from_dict({"anchor": queries[:32], "positive": queries[32:64]})
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "st-run"), max_steps=2, learning_rate=1e-3, per_device_train_batch_size=16,
        report_to="none", use_cpu=True, router_mapping={"anchor": "query", "positive": "document"},
        save_strategy="no",
    )  # fmt: skip
    loss = MultipleNegativesRankingLoss(model)
    SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss).train()
    model.save(str(tmp_path / "st-saved"))
    with pytest.raises(ValueError, match=r"st-saved: the document encoder's weights are not the teacher's"):
        AsymmetricDualEncoder.from_pretrained(tmp_path / "st-saved", config=str(tmp_path / "student"))
    loaded = AsymmetricDualEncoder.from_pretrained(
        tmp_path / "st-saved", config=str(tmp_path / "student"), accept_changed_teacher=True
    )
    assert (loaded.encode_documents(queries[:5]) - tiny_student.encode_documents(queries[:5])).abs().max() > 1e-6
