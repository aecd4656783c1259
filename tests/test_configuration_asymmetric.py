import json

import pytest

from hfdistill import AsymmetricDualEncoderConfig, config_from_teacher, select_layers
from hfdistill.configuration_asymmetric import validate_layers


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
    with pytest.raises(ValueError, match="num_student_layers=13 must be between 0 and the teacher's 12"):
        select_layers("first", 13, 12)
    assert all(select_layers(strategy, 0, 12) == [] for strategy in ("top_bottom", "first", "last", "uniform"))


def test_validate_layers():
    assert validate_layers([5, 0], 6) == [0, 5]
    assert validate_layers([], 6) == []  # a 0-layer student
    with pytest.raises(ValueError, match="repeats a layer"):
        validate_layers([0, 0], 6)
    with pytest.raises(ValueError, match=r"\[6\] out of range: the teacher has 6 layers"):
        validate_layers([0, 6], 6)
    with pytest.raises(ValueError, match="out of range"):
        validate_layers([-1], 6)


def test_config_round_trip(tiny_teacher, tmp_path):
    config = config_from_teacher(tiny_teacher, [0, 2], student_query_prompt="")
    config.save_pretrained(tmp_path)
    loaded = AsymmetricDualEncoderConfig.from_pretrained(tmp_path)
    assert loaded.student_layers == [0, 2] and loaded.student_query_prompt == ""
    assert loaded.teacher_config.hidden_size == 32 and loaded.teacher_name_or_path == tiny_teacher
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "hfdistill-asymmetric"
