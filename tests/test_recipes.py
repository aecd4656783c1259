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
def test_a_model_that_is_not_a_sound_student_ends_in_one_line(recipe, case, tiny_student, tiny_teacher, tmp_path):
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
    line = run_recipe_in_process(recipe, args)
    assert re.search(message, line) and line.startswith("error: ") and "\n" not in line, line
    assert not (tmp_path / "eval").exists() and not (tmp_path / "speed").exists()


OPTIONS = {  # recipe: (arguments, the one line), each refused before any model loads or anything is written
    "evaluate batch size negative": ("evaluate", ["--tasks", "SciFact", "--batch_size", "-5"],
                                     r"--batch_size must be at least 1, got -5"),
    "evaluate batch size zero": ("evaluate", ["--tasks", "SciFact", "--batch_size", "0"],
                                 r"--batch_size must be at least 1, got 0"),
    "evaluate cascade rate above 1": ("evaluate", ["--tasks", "SciFact", "--cascade_rate", "1.5"],
                                      r"--cascade_rate is the share of queries the teacher encodes, 0 to 1; got 1.5"),
    "evaluate language of another task": ("evaluate", ["--tasks", "SciFact", "--languages", "xquad-de=de"],
                                          r"--languages 'xquad-de=de': give `task=code` for one of --tasks"),
    "benchmark batch size negative": ("benchmark", ["--queries", "{tmp}/q.txt", "--batch_sizes", "1", "-8"],
                                      r"--batch_sizes must be whole numbers >= 1, got \[1, -8\]"),
    "benchmark batch size zero": ("benchmark", ["--queries", "{tmp}/q.txt", "--batch_sizes", "0"],
                                  r"--batch_sizes must be whole numbers >= 1, got \[0\]"),
    "benchmark no repeats": ("benchmark", ["--queries", "{tmp}/q.txt", "--repeats", "0"],
                             r"--repeats must be at least 1 .*got 0"),
    "evaluate on a device this machine lacks": ("evaluate", ["--tasks", "SciFact", "--device", "cuda"],
                                                r"--device 'cuda': this machine has no cuda device"),
    "benchmark on a device that is no device": ("benchmark", ["--queries", "{tmp}/q.txt", "--device", "gpu"],
                                                r"--device 'gpu' is not a device name"),
    "export into the student": ("export", ["--output_dir", "{tmp}/student"],
                                r"--output_dir '.*student' holds a saved model \(config.json, modules.json"),
    "export into a file": ("export", ["--output_dir", "{tmp}/q.txt"], r"--output_dir '.*q.txt' is a file"),
    "push check above 100%": ("push", ["--repo_id", "tester/x", "--check_queries", "{tmp}/q.txt", "--check_documents",
                              "{tmp}/q.txt", "--min_top10_overlap", "1.5"],
                              r"min_top10_overlap must be a share between 0 and 1, got 1.5"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(OPTIONS))
def test_an_option_out_of_range_ends_in_one_line_and_writes_nothing(case, tiny_student, tmp_path):
    recipe, args, message = OPTIONS[case]
    (tmp_path / "q.txt").write_text("what is dense retrieval\n")
    tiny_student.save_pretrained(tmp_path / "student")
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    args = ["--model", str(tmp_path / "student"), *(arg.format(tmp=tmp_path) for arg in args)]
    line = run_recipe_in_process(recipe, args)
    assert re.search(message, line) and line.startswith("error: ") and "\n" not in line, line
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before  # the student and the rest untouched


def test_encoding_with_a_batch_size_below_one_is_refused_not_garbage(tiny_student):
    for size in (0, -1):
        with pytest.raises(ValueError, match=rf"batch_size must be a whole number >= 1, got {size}"):
            tiny_student.encode_queries(["what is dense retrieval"], batch_size=size)
