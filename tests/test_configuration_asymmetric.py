import json

import pytest
from transformers import GPT2Config, GPT2Model

from hfdistill import AsymmetricDualEncoderConfig, select_layers
from hfdistill.configuration_asymmetric import read_sentence_transformers_head, validate_layers
from tests.conftest import write_teacher


@pytest.mark.parametrize(
    "strategy, k, n, expected",
    [
        ("top_bottom", 2, 12, [0, 11]),
        ("top_bottom", 1, 12, [11]),
        ("top_bottom", 4, 12, [0, 1, 10, 11]),
        ("top_bottom", 3, 6, [0, 4, 5]),
        ("first", 2, 6, [0, 1]),
        ("last", 2, 6, [4, 5]),
        ("uniform", 2, 12, [5, 11]),
        ("uniform", 4, 12, [2, 5, 8, 11]),
        ("uniform", 6, 6, [0, 1, 2, 3, 4, 5]),
    ],
)
def test_select_layers(strategy, k, n, expected):
    assert select_layers(strategy, k, n) == expected


def test_select_layers_rejects_bad_input():
    with pytest.raises(ValueError, match="Unknown layer strategy 'middle'"):
        select_layers("middle", 2, 12)
    with pytest.raises(ValueError, match="num_student_layers=13 must be between 1 and the teacher's 12"):
        select_layers("first", 13, 12)


def test_validate_layers():
    assert validate_layers([5, 0], 6) == [0, 5]
    with pytest.raises(ValueError, match="is empty"):
        validate_layers([], 6)
    with pytest.raises(ValueError, match="repeats a layer"):
        validate_layers([0, 0], 6)
    with pytest.raises(ValueError, match=r"\[6\] out of range: the teacher has 6 layers"):
        validate_layers([0, 6], 6)
    with pytest.raises(ValueError, match="out of range"):
        validate_layers([-1], 6)


def test_from_teacher_reads_sentence_transformers_head(tiny_teacher, tiny_mpnet_teacher):
    config = AsymmetricDualEncoderConfig.from_teacher(tiny_teacher, [0, 3])
    assert (config.pooling, config.normalize, config.similarity, config.max_length) == ("mean", True, "cosine", 48)
    assert config.student_layers == [0, 3]
    assert config.student_config().num_hidden_layers == 2
    assert config.teacher_config.num_hidden_layers == 4
    mpnet = AsymmetricDualEncoderConfig.from_teacher(tiny_mpnet_teacher, "top_bottom", 1)
    assert (mpnet.pooling, mpnet.normalize, mpnet.similarity, mpnet.student_layers) == ("cls", False, "dot", [3])


@pytest.mark.parametrize(
    "layers, targets", [([0, 3], [3, 4]), ([3], [4]), ([0], [4]), ([1, 2], [2, 4]), ([0, 1, 2, 3], [1, 2, 3, 4])]
)
def test_hint_targets_are_the_states_the_next_kept_layer_reads(tiny_teacher, layers, targets):
    assert AsymmetricDualEncoderConfig.from_teacher(tiny_teacher, layers).hint_targets() == targets


def test_explicit_arguments_override_the_head(tiny_teacher):
    config = AsymmetricDualEncoderConfig.from_teacher(tiny_teacher, [1], pooling="cls", normalize=False)
    assert (config.pooling, config.normalize) == ("cls", False)


def test_config_round_trip(tiny_teacher, tmp_path):
    config = AsymmetricDualEncoderConfig.from_teacher(tiny_teacher, [0, 2], projection_dim=32)
    config.save_pretrained(tmp_path)
    loaded = AsymmetricDualEncoderConfig.from_pretrained(tmp_path)
    assert loaded.student_layers == [0, 2] and loaded.projection_dim == 32
    assert loaded.teacher_config.hidden_size == 32 and loaded.teacher_name_or_path == tiny_teacher
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "hfdistill-asymmetric"


def test_bad_config_values(tiny_teacher):
    with pytest.raises(ValueError, match="projection_dim=16 does not match the teacher's embedding size 32"):
        AsymmetricDualEncoderConfig.from_teacher(tiny_teacher, [0], projection_dim=16)
    with pytest.raises(ValueError, match="pooling='sum' is not supported"):
        AsymmetricDualEncoderConfig.from_teacher(tiny_teacher, [0], pooling="sum")
    with pytest.raises(ValueError, match="out of range"):
        AsymmetricDualEncoderConfig.from_teacher(tiny_teacher, [0, 4])


def test_teacher_without_pooling_config_needs_explicit_pooling(tmp_path):
    teacher = write_teacher(tmp_path / "plain", pooling=None)
    assert read_sentence_transformers_head(teacher) is None
    with pytest.raises(ValueError, match="no sentence-transformers pooling config"):
        AsymmetricDualEncoderConfig.from_teacher(teacher, [0])
    config = AsymmetricDualEncoderConfig.from_teacher(teacher, [0], pooling="cls")
    assert (config.pooling, config.normalize, config.similarity) == ("cls", False, "dot")


def test_decoder_teacher_is_rejected(tmp_path):
    GPT2Model(GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=50, is_decoder=True)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not an encoder"):
        AsymmetricDualEncoderConfig.from_teacher(str(tmp_path), [0], pooling="mean")
