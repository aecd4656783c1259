import json

import pytest
import torch
from transformers import GPT2Config, GPT2Model

from hfdistill import config_from_teacher, from_teacher
from hfdistill.teacher import read_sentence_transformers_teacher
from tests.conftest import E5_PROMPTS, write_st_teacher, write_teacher


def test_from_teacher_reads_sentence_transformers_head(tiny_teacher, tiny_mpnet_teacher):
    config = config_from_teacher(tiny_teacher, [0, 3])
    assert (config.pooling_mode, config.normalize, config.similarity, config.max_length) == (
        "mean",
        True,
        "cosine",
        48,
    )
    assert config.student_layers == [0, 3]
    assert config.teacher_config.num_hidden_layers == 4
    mpnet = config_from_teacher(tiny_mpnet_teacher, "top_bottom", 1)
    assert (mpnet.pooling_mode, mpnet.normalize, mpnet.similarity, mpnet.student_layers) == ("cls", False, "dot", [3])


def test_explicit_arguments_override_the_head(tiny_teacher):
    config = config_from_teacher(tiny_teacher, [1], pooling="cls", normalize=False)
    assert (config.pooling_mode, config.normalize) == ("cls", False)


def test_bad_config_values(tiny_teacher):
    with pytest.raises(ValueError, match="pooling='sum' is not supported; choose one of"):
        config_from_teacher(tiny_teacher, [0], pooling="sum")
    with pytest.raises(ValueError, match="out of range"):
        config_from_teacher(tiny_teacher, [0, 4])


def test_teacher_without_pooling_config_needs_explicit_pooling(tmp_path):
    teacher = write_teacher(tmp_path / "plain", pooling=None)
    assert read_sentence_transformers_teacher(teacher) is None
    with pytest.raises(ValueError, match="no sentence-transformers pooling config"):
        config_from_teacher(teacher, [0])
    config = config_from_teacher(teacher, [0], pooling="cls")
    assert (config.pooling_mode, config.normalize, config.similarity) == ("cls", False, "dot")


def test_architecture_without_a_known_layer_stack_is_named(tmp_path):

    GPT2Model(GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=50)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"GPT2Model has no layer stack hfdistill knows \(tried encoder.layer, "):
        from_teacher(str(tmp_path), [0], pooling="mean")


@pytest.fixture(scope="module")
def e5_style_teacher(tmp_path_factory) -> str:
    return write_st_teacher(tmp_path_factory.mktemp("e5"), "bert", dense=(16,), prompts=E5_PROMPTS)


def test_prompts_and_dense_head_are_read(e5_style_teacher):
    config = config_from_teacher(e5_style_teacher, [0, 3])
    assert (config.query_prompt, config.document_prompt, config.student_prompt) == ("query: ", "passage: ", "query: ")
    assert [module["type"] for module in config.head] == ["Pooling", "Dense", "Normalize"]
    assert config.head[1]["config"]["activation_function"] == "torch.nn.modules.activation.Tanh"
    assert (config.embedding_dim, config.pooling_mode, config.normalize) == (16, "mean", True)


def test_explicit_prompts_win(e5_style_teacher):
    config = config_from_teacher(
        e5_style_teacher, [0], query_prompt="q: ", document_prompt_name="query", student_query_prompt=""
    )
    assert (config.query_prompt, config.document_prompt, config.student_prompt) == ("q: ", "query: ", "")


def test_prompt_name_the_teacher_lacks_is_an_error(e5_style_teacher):
    with pytest.raises(ValueError, match=r"no prompt named 'search_query'; its prompts are \['document', 'query'\]"):
        config_from_teacher(e5_style_teacher, [0], query_prompt_name="search_query")


def test_mismatched_dense_head_is_an_error(tmp_path):
    teacher = write_st_teacher(tmp_path, "bert", dense=(16,))
    config_path = tmp_path / "teacher" / "2_Dense" / "config.json"
    config_path.write_text(config_path.read_text().replace('"in_features": 32', '"in_features": 24'))
    with pytest.raises(
        ValueError, match="Dense module '2_Dense' maps 24 -> 16 features, but the modules before it give 32"
    ):
        config_from_teacher(teacher, [0])


def test_module_hfdistill_cannot_reproduce_is_named(tmp_path):
    teacher = write_st_teacher(tmp_path, "bert")
    modules_path = tmp_path / "teacher" / "modules.json"
    modules = json.loads(modules_path.read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_LayerNorm", "type": "sentence_transformers.models.LayerNorm"})
    modules_path.write_text(json.dumps(modules))
    with pytest.raises(ValueError, match=r"not \['LayerNorm \(2_LayerNorm\)'\]"):
        config_from_teacher(teacher, [0])


def test_remote_code_teacher_needs_the_flag(tmp_path):
    teacher = write_st_teacher(tmp_path, "bert")
    config_path = tmp_path / "teacher" / "config.json"
    config = json.loads(config_path.read_text())
    config["model_type"] = "custom-bert"  # an architecture transformers does not ship, as nomic-bert or jina-bert
    config["auto_map"] = {"AutoConfig": "custom_bert.CustomConfig", "AutoModel": "custom_bert.CustomModel"}
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        config_from_teacher(teacher, [0])


def write_other_vocabulary_model(path) -> str:
    """A tiny DistilBERT sentence-transformers model (mean pooling, no normalization) whose vocabulary is not the
    teacher's: other words, other ids."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import AutoModel, BertTokenizer, DistilBertConfig

    from tests.conftest import SPECIAL, WORDS

    torch.manual_seed(1)
    backbone = path / "backbone"
    backbone.mkdir(parents=True)
    words = [f"{word}s" for word in WORDS] + WORDS[::-1] + ["alpha", "beta"]
    (backbone / "vocab.txt").write_text("\n".join(SPECIAL + words) + "\n")
    config = DistilBertConfig(vocab_size=len(SPECIAL) + len(words), dim=24, hidden_dim=40, n_layers=3, n_heads=4,
                              max_position_embeddings=64)  # fmt: skip
    AutoModel.from_config(config).save_pretrained(backbone)
    BertTokenizer(str(backbone / "vocab.txt")).save_pretrained(backbone)
    modules = [Transformer(str(backbone), max_seq_length=40), Pooling(24, pooling_mode="mean")]
    SentenceTransformer(modules=modules).save(str(path / "model"))
    return str(path / "model")


def test_a_student_that_is_another_model_keeps_its_vocabulary_and_maps_to_the_teacher(tmp_path, queries):
    """LEAF's students: another, smaller encoder with its own tokenizer, a Dense map to the teacher's size, trained
    and saved so that both loaders give its numbers, without hfdistill."""
    import subprocess
    import sys
    import textwrap

    from hfdistill.data import QueryAlignmentDataset
    from hfdistill.trainer import EmbeddingAlignmentTrainer
    from hfdistill.training_args import EmbeddingAlignmentConfig

    teacher = write_st_teacher(tmp_path / "teacher", "bert", "cls", (16,), prompts=E5_PROMPTS)
    other = write_other_vocabulary_model(tmp_path / "other")
    model = from_teacher(teacher, [0, 2], student_model=other)
    assert [module["type"] for module in model.config.student_head] == ["Pooling", "Dense", "Normalize"]
    assert model.config.student_head[1]["config"]["in_features"] == 24 and model.config.embedding_dim == 16
    assert model.config.student_prompt == "" and model.config.query_prompt == "query: "  # its own: none
    assert len(model.query_encoder.transformer.layer) == 2 and len(model.query_tokenizer) != len(model.tokenizer)
    assert model.query_tokenizer("cats")["input_ids"] != model.tokenizer("cats")["input_ids"]
    targets = model.encode_teacher_queries(queries)
    train, held_out = (QueryAlignmentDataset(queries[:240], targets[:240], model),
                       QueryAlignmentDataset(queries[240:], targets[240:], model))  # fmt: skip
    args = EmbeddingAlignmentConfig(output_dir=str(tmp_path / "run"), per_device_train_batch_size=16, max_steps=15,
                                    learning_rate=5e-3, warmup_steps=0, save_strategy="no", report_to="none",
                                    use_cpu=True, seed=0)  # fmt: skip
    trainer = EmbeddingAlignmentTrainer(model, args, train_dataset=train, eval_dataset=held_out)
    before = trainer.evaluate()["eval_mean_cosine"]
    trainer.train()
    assert trainer.evaluate()["eval_mean_cosine"] > before + 0.05
    model.save_pretrained(tmp_path / "student")
    texts = queries[:6]
    torch.save({"q": model.encode_queries(texts), "d": model.encode_documents(texts)}, tmp_path / "ref.pt")
    script = textwrap.dedent(f"""
        import sys, torch
        from sentence_transformers import SentenceTransformer
        from transformers import AutoModel
        path, texts = {str(tmp_path / "student")!r}, {texts!r}
        ref = torch.load({str(tmp_path / "ref.pt")!r})
        st = SentenceTransformer(path, device="cpu")
        torch.testing.assert_close(st.encode_query(texts, convert_to_tensor=True), ref["q"], atol=1e-5, rtol=0)
        torch.testing.assert_close(st.encode_document(texts, convert_to_tensor=True), ref["d"], atol=1e-5, rtol=0)
        auto = AutoModel.from_pretrained(path, trust_remote_code=True)
        torch.testing.assert_close(auto.encode_queries(texts), ref["q"], atol=1e-5, rtol=0)
        torch.testing.assert_close(auto.encode_documents(texts), ref["d"], atol=1e-5, rtol=0)
        assert "hfdistill" not in sys.modules
        print("OK")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.stdout.strip().endswith("OK"), result.stderr[-3000:]


def test_a_student_model_and_shared_token_embeddings_are_refused(tmp_path, tiny_teacher):
    other = write_other_vocabulary_model(tmp_path / "other")
    with pytest.raises(ValueError, match="share_token_embeddings needs a student of the teacher's own layers"):
        config_from_teacher(tiny_teacher, [0], student_model=other, share_token_embeddings=True)
    with pytest.raises(ValueError, match=r"student_layers \[3\] out of range: the student model has 3 layers"):
        config_from_teacher(tiny_teacher, [3], student_model=other)
