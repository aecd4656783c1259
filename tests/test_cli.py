import pytest

from hfdistill import AsymmetricDualEncoder
from hfdistill.cli import parse_args
from hfdistill.training_args import AlignmentTrainingArguments, QueryDataArguments, StudentArguments
from tests.conftest import QWEN3_PROMPTS, ROOT, write_st_teacher

TYPES = (StudentArguments, QueryDataArguments, AlignmentTrainingArguments)
BGE_INSTRUCTION = "Represent this sentence for searching relevant passages: "


def test_yaml_config_with_command_line_overrides(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "teacher: my/teacher\nstudent_layers: [0, 11]\nloss: cosine\nlearning_rate: 3.0e-4\n"
        f"output_dir: {tmp_path / 'out'}\n"
    )
    student, data, training = parse_args(TYPES, [str(config), "--learning_rate", "1e-3", "--student_layers", "1", "2"])
    assert student.teacher == "my/teacher" and student.student_layers == [1, 2]
    assert training.loss == "cosine" and training.learning_rate == 1e-3
    assert training.per_device_train_batch_size == 128 and training.adam_epsilon == 1e-8  # BERT's 1e-6 stalls mse
    assert data.train_queries.endswith("train_queries.tsv.gz")


def test_shipped_configs_parse(tmp_path):
    from pathlib import Path

    configs = sorted((Path(__file__).parents[1] / "recipes" / "configs").rglob("*.yaml"))
    assert {c.name for c in configs} >= {
        "minilm-2L.yaml",
        "mpnet-2L.yaml",
        "msmarco-bert-base-2L.yaml",
        "L4-middle.yaml",
    }
    protocols = {}  # study folder -> (loss, lr, epsilon, epochs): a study's rows differ only in their layers
    for config in configs:
        student, _, training = parse_args(TYPES, [str(config), "--output_dir", str(tmp_path / config.stem)])
        assert student.teacher.count("/") == 1  # a Hub id, so the config works outside this repository
        if config.parent.name.endswith("-study"):
            protocol = (training.loss, training.learning_rate, training.adam_epsilon, training.num_train_epochs)
            assert protocols.setdefault(config.parent.name, protocol) == protocol, config
    assert protocols.keys() == {"minilm-study", "mpnet-study", "e5-small-study"}


@pytest.mark.parametrize(
    "config, family, pooling, prompts, num_layers, layers, query_prompt, student_prompt, document_prompt",
    [
        ("e5-small-2L", "xlm-roberta", "mean", None, 12, [0, 11], "query: ", "query: ", "passage: "),
        ("bge-small-2L", "bert", "cls", None, 12, [0, 11], BGE_INSTRUCTION, BGE_INSTRUCTION, ""),
        ("qwen3-embedding-2L", "qwen3", "lasttoken", QWEN3_PROMPTS, 28, [0, 27], QWEN3_PROMPTS["query"], "", ""),
    ],
)
def test_teacher_configs_build_with_a_tiny_model_of_the_checkpoints_architecture(
    tmp_path, config, family, pooling, prompts, num_layers, layers, query_prompt, student_prompt, document_prompt
):
    teacher = write_st_teacher(tmp_path, family, pooling, prompts=prompts, num_layers=num_layers)
    path = ROOT / "recipes" / "configs" / f"{config}.yaml"
    student, _, _ = parse_args(TYPES, [str(path), "--teacher", teacher, "--output_dir", str(tmp_path / "out")])
    layers_or_strategy = student.student_layers or student.layer_strategy
    model = AsymmetricDualEncoder.from_teacher(
        student.teacher, layers_or_strategy, student.num_student_layers, **student.teacher_kwargs
    )
    assert model.config.student_layers == layers and model.config.pooling_mode == pooling
    assert (model.config.query_prompt, model.config.student_prompt) == (query_prompt, student_prompt)
    assert model.config.document_prompt == document_prompt
    queries = ["what is dense retrieval"]
    assert model.tokenize_queries(queries)["input_ids"] == model.tokenizer([student_prompt + queries[0]])["input_ids"]


def test_config_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        parse_args(TYPES, [str(tmp_path / "nope.yaml")])
    bad = tmp_path / "bad.yaml"
    bad.write_text("teachr: x\n")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['teachr'\]"):
        parse_args(TYPES, [str(bad)])


def test_student_layers_auto_or_indices(tmp_path):
    config = tmp_path / "auto.yaml"
    config.write_text(f"student_layers: auto\nnum_student_layers: 3\noutput_dir: {tmp_path / 'out'}\n")
    student, _, _ = parse_args(TYPES, [str(config)])
    assert student.student_layers is None and student.layer_strategy == "auto" and student.num_student_layers == 3
    with pytest.raises(ValueError, match=r"student_layers must be 0-based layer indices .* got \['0', 'top'\]"):
        parse_args(TYPES, ["--student_layers", "0", "top", "--output_dir", str(tmp_path / "out")])
    with pytest.raises(ValueError, match=r"selection_proxy 'loss'; choose one of \('cosine', 'neighbours', 'cka'\)"):
        parse_args(TYPES, ["--selection_proxy", "loss", "--output_dir", str(tmp_path / "out")])


def test_usage_doc_lists_every_option_as_the_dataclasses_define_it():
    from hfdistill.cli import options_reference

    usage = (ROOT / "docs" / "usage.md").read_text()
    generated = usage.split('print(options_reference())" -->\n', 1)[1].split("<!-- end of generated options -->")[0]
    assert generated == options_reference(), "regenerate docs/usage.md's options (see CONTRIBUTING.md)"
    assert "| `--student_query_prompt` | `None` |" in generated and "| `--loss` | `'mse'` |" in generated
