"""The evaluate, benchmark, export and push recipes end in one line naming the problem when a model is not a sound
student, before any encoding or upload."""

import json
import re

import pytest

from tests.conftest import run_recipe_in_process

RECIPES = {  # recipe: the arguments around the model
    "evaluate": ["--tasks", "SciFact", "--output_dir", "{tmp}/eval"],  # mteb's task, read only if a model loads
    "benchmark": ["--queries", "{tmp}/q.txt", "--output_dir", "{tmp}/speed"],
    "export": ["--output_dir", "{tmp}/export"],
    "push": ["--repo_id", "tester/x"],
}
MODELS = {  # case: (the model folder's state, the message)
    "missing folder": (None, r"'.*nowhere': no such folder"),
    "not a student": ("teacher", r"is not an hfdistill student \(model_type='bert'\)"),
    "no config": ("empty", r"holds no config.json: not a saved student"),
    "truncated weights": ("truncated", r"model.safetensors: not a readable safetensors file"),
}


@pytest.mark.parametrize("case", sorted(MODELS))
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_a_model_that_is_not_a_sound_student_ends_in_one_line(recipe, case, tiny_student, tiny_teacher, tmp_path,
                                                               monkeypatch):  # fmt: skip
    state, message = MODELS[case]
    (tmp_path / "q.txt").write_text("what is dense retrieval\n")
    model = {None: tmp_path / "nowhere", "teacher": tiny_teacher}.get(state, tmp_path / "student")
    if state in ("empty", "truncated"):
        tiny_student.save_pretrained(model)
        if state == "empty":
            (model / "config.json").unlink()
        else:
            structure = json.loads((model / "router_config.json").read_text())["structure"]
            weights = model / structure["query"][0] / "model.safetensors"
            weights.write_bytes(weights.read_bytes()[:100])
    args = ["--model", str(model), *(arg.format(tmp=tmp_path) for arg in RECIPES[recipe])]
    line = run_recipe_in_process(recipe, args, monkeypatch)
    assert re.search(message, line) and line.startswith("error: ") and "\n" not in line, line
    assert not (tmp_path / "eval").exists() and not (tmp_path / "speed").exists()
