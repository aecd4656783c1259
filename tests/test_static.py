import json

import pytest
import torch

from hfdistill import from_teacher
from hfdistill.export import check_export, export_query_encoder
from hfdistill.query_encoders import Model2VecQueryEncoder, load_query_encoder
from hfdistill.static import TYPICAL_TOKENS, static_sentence_transformer
from tests.conftest import TEACHERS, run_in_process


def zero_layer_student(teacher: str, **options):
    student = from_teacher(teacher, [], **options)
    with torch.no_grad():
        for p in student.query_encoder.parameters():
            p.add_(torch.randn_like(p) * 0.02)  # a student that is not the teacher's copy
    return student


def test_static_vectors_are_the_zero_layer_student_where_positions_do_not_matter(tiny_teacher):
    """With position embeddings zeroed, a query of the typical length gets the student's direction exactly (the
    special tokens' share is folded in at that length); other lengths differ, and the static side is the folder
    sentence-transformers loads."""
    student = zero_layer_student(tiny_teacher)
    with torch.no_grad():
        student.query_encoder.embeddings.position_embeddings.weight.zero_()
    static = static_sentence_transformer(student)
    words = [f"w{i}" for i in range(40)]
    typical = [" ".join(words[i : i + TYPICAL_TOKENS]) for i in range(0, 32, 4)]
    assert {len(student.query_tokenizer(text, add_special_tokens=False)["input_ids"]) for text in typical} == {
        TYPICAL_TOKENS
    }
    cosine = torch.nn.functional.cosine_similarity
    exact = cosine(static.encode(typical, convert_to_tensor=True), student.encode_queries(typical))
    torch.testing.assert_close(exact, torch.ones_like(exact), atol=1e-5, rtol=0)
    short = ["w1", "w2 w3"]
    assert cosine(static.encode(short, convert_to_tensor=True), student.encode_queries(short)).max() < 0.9999


def test_static_export_loads_in_sentence_transformers_and_the_evaluators(family_teacher, queries, tmp_path):
    """Every family with mean pooling exports (its prompt, Dense and Normalize kept); other poolings are refused."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding

    name, teacher = family_teacher
    student = zero_layer_student(teacher)
    if TEACHERS[name][1] != "mean":
        with pytest.raises(ValueError, match="needs a student with mean pooling"):
            export_query_encoder(student, tmp_path / "static", backend="static")
        assert not (tmp_path / "static").exists()
        return
    folder = export_query_encoder(student, tmp_path / "static", backend="static")
    loaded = SentenceTransformer(str(folder), device="cpu")
    assert isinstance(loaded[0], StaticEmbedding) and len(loaded) == len(student.query_head)  # pooling -> lookup
    expected = static_sentence_transformer(student).encode(queries, convert_to_tensor=True)
    torch.testing.assert_close(loaded.encode_query(queries, convert_to_tensor=True), expected)
    record = json.loads((folder / "query_encoder.json").read_text())
    assert record["static"] is True and record["layers"] == [] and record["teacher"] == teacher
    assert record["prompt"] == student.config.student_prompt == (loaded.prompts.get("query") or "")
    encoder = load_query_encoder(str(folder))  # what recipes/evaluate.py --query_encoder and the benchmark load
    torch.testing.assert_close(encoder.encode_queries(queries), expected)
    agreement = torch.nn.functional.cosine_similarity(expected, student.encode_queries(queries))
    assert agreement.mean() > 0.5  # an approximation of the student (positions dropped), not a different model


def test_static_export_refuses_what_it_cannot_serve_before_writing(tiny_teacher, tiny_student, tmp_path):
    for backend in ("static", "model2vec"):
        with pytest.raises(ValueError, match="takes no --quantize"):
            check_export(backend, "int8")
        with pytest.raises(ValueError, match="made from the student alone"):
            check_export(backend, None, "teacher")
    with pytest.raises(ValueError, match=r"needs a 0-layer student \(--student_layers \[\]\), this one keeps layers"):
        export_query_encoder(tiny_student, tmp_path / "two", backend="static")
    assert not (tmp_path / "two").exists()
    tiny_student.save_pretrained(tmp_path / "student")
    result = run_in_process(["recipes/export.py", "--model", str(tmp_path / "student"), "--backend", "static",
                             "--output_dir", str(tmp_path / "out")], check=False)  # fmt: skip
    assert result.returncode == 1 and "needs a 0-layer student" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_model2vec_export_encodes_as_the_static_export(family_teacher, queries, tmp_path):
    """A prompt-free 0-layer student of every family with mean pooling exports as a model2vec model that encodes as
    its sentence-transformers static export does (a Dense map without activation folded into the token vectors);
    a query prompt, a Dense map with an activation and other poolings are refused before anything is written."""
    from model2vec import StaticModel

    name, teacher = family_teacher
    refusals = []
    if TEACHERS[name][1] != "mean":
        refusals.append((zero_layer_student(teacher, student_query_prompt=""), "needs a student with mean pooling"))
    else:
        if TEACHERS[name][3]:
            refusals.append((zero_layer_student(teacher), "model2vec reads queries as given"))
        student = zero_layer_student(teacher, student_query_prompt="")
        if TEACHERS[name][2]:
            refusals.append((zero_layer_student(teacher, student_query_prompt=""), "a Dense with an activation"))
            for module in list(student.query_head)[1:-1]:
                module.activation_function = torch.nn.Identity()  # a linear map, which model2vec can fold in
    for refused, message in refusals:
        with pytest.raises(ValueError, match=message):
            export_query_encoder(refused, tmp_path / "refused", backend="model2vec")
        assert not (tmp_path / "refused").exists()
    if TEACHERS[name][1] != "mean":
        return
    student.query_encoder.resize_token_embeddings(student.query_tokenizer.backend_tokenizer.get_vocab_size() + 3)
    folder = export_query_encoder(student, tmp_path / "model2vec", backend="model2vec")  # rows past the vocabulary
    expected = static_sentence_transformer(student).encode(queries, convert_to_tensor=True)
    torch.testing.assert_close(torch.from_numpy(StaticModel.from_pretrained(folder).encode(queries)), expected)
    encoder = load_query_encoder(str(folder))  # what recipes/evaluate.py --query_encoder and the benchmark load
    assert isinstance(encoder, Model2VecQueryEncoder) and encoder.config["embedding_dim"] == expected.shape[1]
    torch.testing.assert_close(encoder.encode_queries(queries), expected)
    assert json.loads((folder / "query_encoder.json").read_text())["static"] is True
