import os
import subprocess
import sys
import textwrap

import pytest
import torch
from sentence_transformers.sentence_transformer.modules import Normalize
from transformers import AutoModel

from hfdistill import AsymmetricDualEncoder, from_teacher
from hfdistill.modeling_asymmetric import layer_stack, student_state_dict
from tests.conftest import E5_PROMPTS, SAVED_FILES, TEACHERS, write_st_teacher

TEXTS = ["what is dense retrieval", "the cat of the city", "how to search a big index fast"]
LONG_TEXTS = [*TEXTS, "why does the river of the big city run fast to the sun and the moon"]  # past the windows


def test_every_family_is_read_exactly_as_sentence_transformers_reads_it(family_teacher):
    from sentence_transformers import SentenceTransformer

    name, teacher = family_teacher
    reference = SentenceTransformer(teacher, device="cpu")
    full = from_teacher(teacher, "first", 4)
    queries = reference.encode_query(LONG_TEXTS, convert_to_tensor=True)
    documents = reference.encode_document(LONG_TEXTS, convert_to_tensor=True)
    assert queries.shape[1] == full.config.embedding_dim
    torch.testing.assert_close(full.encode_queries(LONG_TEXTS), queries, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(full.encode_teacher_queries(LONG_TEXTS), queries, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(full.encode_documents(LONG_TEXTS), documents, atol=1e-5, rtol=1e-5)
    if TEACHERS[name][3]:  # the prompts change the embeddings: they are not ignored
        assert (queries - documents).abs().max() > 1e-3


def _skip_layer(module, args, kwargs, output):
    """A forward hook that makes a layer hand on its input unchanged (its hidden states come first)."""
    hidden = args[0] if args else next(iter(kwargs.values()))
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


@pytest.mark.parametrize("layers", [[0, 3], [1, 2], [3], [1]])
def test_dropping_layers_is_exact(family_teacher, layers):
    """The untrained student computes what the teacher computes when it skips the layers the student drops."""
    _, teacher = family_teacher
    model = from_teacher(teacher, layers)
    teacher_stack = layer_stack(model.document_encoder)
    assert len(layer_stack(model.query_encoder)) == len(layers)
    per_layer = getattr(model.config.teacher_config, "layer_types", None)
    if per_layer is not None:
        assert model.query_encoder.config.layer_types == [per_layer[i] for i in layers]
    skipped = [i for i in range(len(teacher_stack)) if i not in layers]
    hooks = [teacher_stack[i].register_forward_hook(_skip_layer, with_kwargs=True) for i in skipped]
    try:
        want = model.encode_teacher_queries(LONG_TEXTS)
    finally:
        for hook in hooks:
            hook.remove()
    torch.testing.assert_close(model.encode_queries(LONG_TEXTS), want, atol=1e-6, rtol=1e-6)
    assert (model.encode_teacher_queries(LONG_TEXTS) - want).abs().max() > 1e-4  # the dropped layers mattered


@pytest.mark.parametrize("name", ["bert-dense", "qwen3-lasttoken-instruction", "modernbert"])
def test_prompted_and_dense_students_round_trip_without_hfdistill(name, tmp_path_factory, tmp_path):
    """A student with a Dense head / a decoder with an instruction prompt: saved, loaded by transformers alone with
    trust_remote_code, and viewed as a SentenceTransformer, it gives the same embeddings."""
    family, pooling, dense, prompts = TEACHERS[name]
    teacher = write_st_teacher(tmp_path_factory.mktemp(name), family, pooling, dense, prompts=prompts)
    student = from_teacher(teacher, [0, 3])
    with torch.no_grad():
        for parameter in student.query_parameters():
            parameter.add_(0.05)
    student.save_pretrained(tmp_path / "student")
    reference = {"q": student.encode_queries(LONG_TEXTS), "d": student.encode_documents(LONG_TEXTS)}
    torch.save(reference, tmp_path / "ref.pt")
    script = textwrap.dedent(f"""
        import sys, torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(tmp_path / "student")!r}, trust_remote_code=True)
        assert "hfdistill" not in sys.modules, "hfdistill was imported"
        ref = torch.load({str(tmp_path / "ref.pt")!r})
        torch.testing.assert_close(model.encode_queries({LONG_TEXTS!r}), ref["q"], atol=1e-5, rtol=0)
        torch.testing.assert_close(model.encode_documents({LONG_TEXTS!r}), ref["d"], atol=1e-5, rtol=0)
        from sentence_transformers import SentenceTransformer
        st = SentenceTransformer({str(tmp_path / "student")!r}, device="cpu")
        queries = st.encode_query({LONG_TEXTS!r}, convert_to_tensor=True)
        torch.testing.assert_close(queries, ref["q"], atol=1e-5, rtol=0)
        print("OK")
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, stdin=subprocess.DEVNULL
    )
    assert result.stdout.strip().endswith("OK"), result.stderr[-3000:]
    assert "MISSING" not in result.stderr, result.stderr[-3000:]  # no weight is missing or made up on loading
    view = student.to_sentence_transformer()
    torch.testing.assert_close(
        view.encode_query(LONG_TEXTS, convert_to_tensor=True), reference["q"], atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        view.encode_document(LONG_TEXTS, convert_to_tensor=True), reference["d"], atol=1e-5, rtol=0
    )


def test_prompt_free_student_reads_raw_queries(tmp_path):
    from sentence_transformers import SentenceTransformer

    family, pooling, dense, prompts = TEACHERS["qwen3-lasttoken-instruction"]
    teacher = write_st_teacher(tmp_path, family, pooling, dense, prompts=prompts)
    full = from_teacher(teacher, "first", 4, student_query_prompt="")
    raw = SentenceTransformer(teacher, device="cpu").encode(LONG_TEXTS, convert_to_tensor=True)  # no prompt
    torch.testing.assert_close(full.encode_queries(LONG_TEXTS), raw, atol=1e-5, rtol=1e-5)
    prompted = full.tokenize_queries(LONG_TEXTS)["input_ids"]
    assert prompted == full.tokenizer(LONG_TEXTS)["input_ids"]  # the student's inputs hold no prompt tokens
    assert (full.encode_teacher_queries(LONG_TEXTS) - raw).abs().max() > 1e-3  # the teacher's targets keep it
    assert full.to_sentence_transformer().prompts["query"] == ""


def test_student_starts_from_the_chosen_teacher_layers(tiny_student):
    teacher_layers = tiny_student.document_encoder.encoder.layer
    student_layers = tiny_student.query_encoder.encoder.layer
    assert len(student_layers) == 2
    for student_index, teacher_index in enumerate([0, 3]):
        for (name, p), (_, q) in zip(
            student_layers[student_index].named_parameters(), teacher_layers[teacher_index].named_parameters()
        ):
            assert torch.equal(p, q), name
    assert torch.equal(
        tiny_student.query_encoder.embeddings.word_embeddings.weight,
        tiny_student.document_encoder.embeddings.word_embeddings.weight,
    )


def test_student_with_all_layers_equals_the_teacher(tiny_teacher):
    model = from_teacher(tiny_teacher, student_layers="first", num_student_layers=4)
    torch.testing.assert_close(model.encode_queries(TEXTS), model.encode_documents(TEXTS))


def test_truncated_student_differs_from_the_teacher(tiny_student):
    assert not torch.allclose(tiny_student.encode_queries(TEXTS), tiny_student.encode_documents(TEXTS))


def test_documents_match_the_teacher_as_sentence_transformers_computes_them(tiny_teacher, tiny_student):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(tiny_teacher, device="cpu").encode(TEXTS, convert_to_tensor=True)
    torch.testing.assert_close(tiny_student.encode_documents(TEXTS), reference, atol=1e-5, rtol=1e-5)
    norms = tiny_student.encode_queries(TEXTS).norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones(3))


def test_mpnet_teacher(tiny_mpnet_teacher):
    from sentence_transformers import SentenceTransformer

    model = from_teacher(tiny_mpnet_teacher, student_layers=[0, 3])
    reference = SentenceTransformer(tiny_mpnet_teacher, device="cpu").encode(TEXTS, convert_to_tensor=True)
    torch.testing.assert_close(model.encode_documents(TEXTS), reference, atol=1e-5, rtol=1e-5)
    assert model.encode_queries(TEXTS).shape == (3, 32)
    assert "relative_attention_bias.weight" in dict(model.query_encoder.encoder.named_parameters())


def test_student_state_dict_renumbers_layers():
    state = {f"encoder.layer.{i}.w": torch.tensor(float(i)) for i in range(4)}
    state["embeddings.w"] = torch.tensor(9.0)
    out = student_state_dict(state, [1, 3])
    assert {k: v.item() for k, v in out.items()} == {
        "encoder.layer.0.w": 1.0,
        "encoder.layer.1.w": 3.0,
        "embeddings.w": 9.0,
    }


def test_document_encoder_is_frozen_after_loading(tiny_student, tmp_path):
    tiny_student.save_pretrained(tmp_path)
    loaded = AsymmetricDualEncoder.from_pretrained(tmp_path)
    assert not any(p.requires_grad for p in loaded.document_encoder.parameters())
    assert all(p.requires_grad for p in loaded.query_encoder.parameters())
    loaded.train()
    assert loaded.query_encoder.training and not loaded.document_encoder.training


def test_save_load_round_trip(tiny_student, tmp_path):
    with torch.no_grad():  # make the student differ from its initialisation
        tiny_student.query_encoder.encoder.layer[0].output.dense.bias.add_(0.5)
    tiny_student.save_pretrained(tmp_path)
    assert SAVED_FILES <= set(os.listdir(tmp_path))
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, AsymmetricDualEncoder)
    torch.testing.assert_close(loaded.encode_queries(TEXTS), tiny_student.encode_queries(TEXTS), atol=1e-5, rtol=0)
    torch.testing.assert_close(loaded.encode_documents(TEXTS), tiny_student.encode_documents(TEXTS), atol=1e-5, rtol=0)


def test_saved_student_is_a_native_sentence_transformer_with_each_tensor_once(tmp_path):
    """One folder: SentenceTransformer(path) in a fresh process routes queries to the student and documents to the
    teacher with their prompts; the weights on disk are the two encoders' (and Dense heads'), once."""
    from safetensors import safe_open

    family, pooling, dense, prompts = TEACHERS["bert-dense"]
    teacher = write_st_teacher(tmp_path / "teacher", family, pooling, dense, prompts=E5_PROMPTS)
    student = from_teacher(teacher, [0, 3])
    with torch.no_grad():
        for parameter in student.query_parameters():
            parameter.add_(0.05)
    student.save_pretrained(tmp_path / "student")
    assert SAVED_FILES <= set(os.listdir(tmp_path / "student"))
    assert not (tmp_path / "student" / "model.safetensors").exists()
    stored = 0
    for path in (tmp_path / "student").rglob("*.safetensors"):
        with safe_open(path, "pt") as f:
            stored += sum(f.get_tensor(key).numel() for key in f.keys())
    assert stored == sum(p.numel() for p in student.state_dict().values())  # every tensor, once
    torch.save({"q": student.encode_queries(LONG_TEXTS), "d": student.encode_documents(LONG_TEXTS)}, tmp_path / "r.pt")
    script = textwrap.dedent(f"""
        import sys, torch
        from sentence_transformers import SentenceTransformer
        model = SentenceTransformer({str(tmp_path / "student")!r}, device="cpu")
        assert "hfdistill" not in sys.modules, "hfdistill was imported"
        assert model.prompts["query"] == "query: " and model.prompts["document"] == "passage: "
        ref, texts = torch.load({str(tmp_path / "r.pt")!r}), {LONG_TEXTS!r}
        torch.testing.assert_close(model.encode_query(texts, convert_to_tensor=True), ref["q"], atol=1e-5, rtol=0)
        torch.testing.assert_close(model.encode_document(texts, convert_to_tensor=True), ref["d"], atol=1e-5, rtol=0)
        print("OK")
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, stdin=subprocess.DEVNULL
    )
    assert result.stdout.strip().endswith("OK"), result.stderr[-3000:]
    loaded = AutoModel.from_pretrained(tmp_path / "student")
    torch.testing.assert_close(
        loaded.encode_queries(LONG_TEXTS), student.encode_queries(LONG_TEXTS), atol=1e-6, rtol=0
    )


def test_student_sentence_transformers_cannot_express_is_saved_for_transformers(tmp_path, caplog):
    family, pooling, dense, prompts = TEACHERS["modernbert"]
    teacher = write_st_teacher(tmp_path / "teacher", family, pooling, dense, prompts=prompts)
    student = from_teacher(teacher, [1, 3])  # ModernBERT's layer 0 has no attention norm
    student.save_pretrained(tmp_path / "student")
    assert (tmp_path / "student" / "model.safetensors").exists()
    assert not (tmp_path / "student" / "router_config.json").exists()
    assert "Saving" in caplog.text and "for transformers only" in caplog.text and "attn_norm" in caplog.text
    loaded = AsymmetricDualEncoder.from_pretrained(tmp_path / "student")
    torch.testing.assert_close(
        loaded.encode_queries(LONG_TEXTS), student.encode_queries(LONG_TEXTS), atol=1e-6, rtol=0
    )


def test_a_student_sharing_the_teacher_token_embeddings_stores_them_once(tiny_teacher, tmp_path, caplog):
    from safetensors import safe_open

    student = from_teacher(tiny_teacher, [0, 3], share_token_embeddings=True)
    embeddings = student.document_encoder.get_input_embeddings()
    assert student.query_encoder.get_input_embeddings() is embeddings and not embeddings.weight.requires_grad
    with torch.no_grad():
        student.query_encoder.encoder.layer[0].output.dense.bias.add_(0.5)
    student.save_pretrained(tmp_path / "student")
    assert "shares the teacher's token embeddings" in caplog.text and "to_sentence_transformer" in caplog.text
    with safe_open(tmp_path / "student" / "model.safetensors", "pt") as f:
        stored = sum(f.get_tensor(key).numel() for key in f.keys())
    assert (
        stored
        == sum(p.numel() for p in student.parameters())
        == (sum(p.numel() for p in student.state_dict().values()) - embeddings.weight.numel())
    )
    loaded = AutoModel.from_pretrained(tmp_path / "student")
    assert loaded.query_encoder.get_input_embeddings() is loaded.document_encoder.get_input_embeddings()
    torch.testing.assert_close(
        loaded.encode_queries(LONG_TEXTS), student.encode_queries(LONG_TEXTS), atol=1e-6, rtol=0
    )
    view = loaded.to_sentence_transformer()
    torch.testing.assert_close(
        view.encode_query(LONG_TEXTS, convert_to_tensor=True), student.encode_queries(LONG_TEXTS), atol=1e-5, rtol=0
    )


def test_trust_remote_code_load_without_hfdistill(tiny_student, tmp_path):
    with torch.no_grad():
        tiny_student.query_encoder.embeddings.word_embeddings.weight.mul_(1.5)
    tiny_student.save_pretrained(tmp_path / "student")
    torch.save(
        {"q": tiny_student.encode_queries(TEXTS), "d": tiny_student.encode_documents(TEXTS)}, tmp_path / "ref.pt"
    )
    script = textwrap.dedent(f"""
        import sys, torch
        from transformers import AutoModel, AutoTokenizer
        model = AutoModel.from_pretrained({str(tmp_path / "student")!r}, trust_remote_code=True)
        assert "hfdistill" not in sys.modules, "hfdistill was imported"
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        ref = torch.load({str(tmp_path / "ref.pt")!r})
        texts = {TEXTS!r}
        torch.testing.assert_close(model.encode_queries(texts), ref["q"], atol=1e-5, rtol=0)
        torch.testing.assert_close(model.encode_documents(texts), ref["d"], atol=1e-5, rtol=0)
        tokenizer = AutoTokenizer.from_pretrained({str(tmp_path / "student")!r})  # no remote code, no [y/N] prompt
        assert tokenizer("what is dense retrieval")["input_ids"][:2] == [2, 5]
        print("OK")
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, stdin=subprocess.DEVNULL
    )
    assert result.stdout.strip().endswith("OK"), result.stderr[-3000:]


def test_encode_without_tokenizer_is_a_clear_error(tiny_student):
    tiny_student.tokenizer = None
    with pytest.raises(ValueError, match="no tokenizer attached"):
        tiny_student.encode_queries(["x"])


def test_encode_empty_and_single_string(tiny_student):
    assert tiny_student.encode_queries([]).shape == (0, 32)
    assert tiny_student.encode_queries("what is dense retrieval").shape == (1, 32)


@pytest.mark.parametrize("dropout, expected", [(0.0, {0.0}), (0.25, {0.25}), (None, {0.1})])
def test_the_students_dropout_is_set_when_it_is_built_and_the_teachers_is_kept(tiny_teacher, tmp_path, dropout,
                                                                               expected):  # fmt: skip
    from torch import nn

    student = from_teacher(tiny_teacher, [0, 3], student_dropout=dropout)
    assert {m.p for m in student.query_encoder.modules() if isinstance(m, nn.Dropout)} == expected
    assert {m.p for m in student.document_encoder.modules() if isinstance(m, nn.Dropout)} == {0.1}
    student.save_pretrained(tmp_path)
    reloaded = AsymmetricDualEncoder.from_pretrained(tmp_path)
    assert {m.p for m in reloaded.query_encoder.modules() if isinstance(m, nn.Dropout)} == expected
    with pytest.raises(ValueError, match=r"student_dropout must be in \[0, 1\), got 1.5"):
        from_teacher(tiny_teacher, [0, 3], student_dropout=1.5)


def test_chunks_of_similar_length_give_the_padded_batchs_embeddings_for_every_family(family_teacher, queries):
    """Every architecture: the chunked forward (one token-embedding lookup, chunks cut to their own length) gives
    the one padded batch's embeddings, and its table one gradient."""
    name, teacher = family_teacher
    model = from_teacher(teacher, [0, 3], **({"student_query_prompt": ""} if name.startswith("qwen3") else {}))
    model.eval()
    batch = model.tokenize_queries(queries[:24], padding=True, return_tensors="pt")
    padded = model(**batch).query_embeds
    for cost in (0, 4, 10**6):
        chunked = model(**batch, chunk_cost=cost).query_embeds
        torch.testing.assert_close(chunked, padded, atol=2e-5, rtol=1e-4)
    model(**batch, chunk_cost=0).query_embeds.sum().backward()
    assert model.query_encoder.get_input_embeddings().weight.grad is not None


class Halve(Normalize):
    """A head module hfdistill does not know: halves the embedding (saved and loaded as sentence-transformers'
    `Normalize` is)."""

    def forward(self, features: dict) -> dict:
        return {**features, "sentence_embedding": features["sentence_embedding"] / 2}


def test_a_new_head_module_is_one_table_entry(tiny_student, monkeypatch, tmp_path):
    from hfdistill.configuration_asymmetric import HEAD_MODULES, HeadModule, output_size
    from hfdistill.model_card import describe_head

    entry = HeadModule(
        Halve, build=lambda config: Halve(), output_size=lambda config, size: size, describe=lambda c: "x/2"
    )
    config = tiny_student.config.to_dict()
    config["head"] = [*config["head"], {"type": "Halve", "path": "", "config": {}}]
    with pytest.raises(ValueError, match=r"head must start with a Pooling module and hold .* got .*'Halve'"):
        type(tiny_student.config).from_dict(config)
    monkeypatch.setitem(HEAD_MODULES, "Halve", entry)  # the one edit a new head module needs
    halved = AsymmetricDualEncoder(type(tiny_student.config).from_dict(config))
    halved.load_state_dict(tiny_student.state_dict())
    halved.tokenizer = tiny_student.tokenizer
    halved.save_pretrained(tmp_path)
    loaded = AsymmetricDualEncoder.from_pretrained(tmp_path)
    for model in (halved, loaded):
        expected = tiny_student.encode_documents(TEXTS) / 2
        torch.testing.assert_close(model.encode_documents(TEXTS), expected, atol=1e-6, rtol=0)
    assert describe_head(loaded.config.head).endswith(", L2 normalization, x/2")
    assert output_size(loaded.config.head, 32) == 32
