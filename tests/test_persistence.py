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
    with pytest.raises(FileNotFoundError, match=r"'.*nowhere' is not a saved student"):
        load_student(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match=r"is not an hfdistill student \(model_type='bert'\)"):
        load_student(tiny_teacher)
