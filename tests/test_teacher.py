import json

import pytest
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
