import pytest

from hfdistill import from_teacher
from hfdistill.cli import parse_args
from hfdistill.training_args import EmbeddingAlignmentConfig, QueryDataArguments, StudentArguments
from tests.conftest import QWEN3_PROMPTS, ROOT, write_st_teacher

TYPES = (StudentArguments, QueryDataArguments, EmbeddingAlignmentConfig)
BGE_INSTRUCTION = "Represent this sentence for searching relevant passages: "


def test_yaml_config_with_command_line_overrides(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "teacher: my/teacher\nstudent_layers: [0, 11]\nloss: cosine\nlearning_rate: 3.0e-4\n"
        f"train_queries: queries.tsv.gz\noutput_dir: {tmp_path / 'out'}\n"
    )
    student, data, training = parse_args(TYPES, [str(config), "--learning_rate", "1e-3", "--student_layers", "1", "2"])
    assert student.teacher == "my/teacher" and student.student_layers == [1, 2]
    assert training.loss == "cosine" and training.learning_rate == 1e-3
    assert training.per_device_train_batch_size == 128 and training.adam_epsilon == 1e-8  # BERT's 1e-6 stalls mse
    assert data.train_queries == "queries.tsv.gz"  # the file satisfies the required option


def test_train_queries_is_required_without_a_config(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_args(TYPES, ["--output_dir", str(tmp_path / "out")])
    assert "the following arguments are required: --train_queries" in capsys.readouterr().err


def test_shipped_configs_parse_and_name_hub_data(tmp_path):
    """A user's configs name Hub teachers and a Hub dataset of queries (the offline file is a development override);
    the studies' configs parse too, each study's rows differing only in their layers."""
    root = ROOT
    user = sorted((root / "recipes" / "configs").glob("*.yaml"))
    assert {c.stem for c in user} >= {"minilm-2L", "e5-small-2L", "e5-small-0L", "paper-msmarco-bert-base-2L"}
    for config in user:
        student, data, training = parse_args(TYPES, [str(config), "--output_dir", str(tmp_path / config.stem)])
        assert student.teacher.count("/") == 1 and not student.teacher.startswith(".")  # works outside the repo
        assert data.train_queries == "sentence-transformers/msmarco-corpus" and data.queries_subset == "query"
        assert data.train_languages == ["en"]  # what the card may claim of the training text
        assert all(
            source.count("/") == 1 for source in data.train_documents or []
        )  # the index configs name a Hub corpus
    protocols = {}  # study folder -> (loss, lr, epsilon, epochs)
    for config in sorted((root / "research" / "configs").rglob("*.yaml")):
        student, _, training = parse_args(TYPES, [str(config), "--output_dir", str(tmp_path / config.stem)])
        if config.parent.name.endswith("-study"):
            protocol = (training.loss, training.learning_rate, training.adam_epsilon, training.num_train_epochs)
            assert protocols.setdefault(config.parent.name, protocol) == protocol, config
    assert protocols.keys() == {"minilm-study", "mpnet-study", "e5-small-study"}


@pytest.mark.parametrize(
    "config, family, pooling, prompts, num_layers, layers, query_prompt, student_prompt, document_prompt",
    [
        ("e5-small-2L", "xlm-roberta", "mean", None, 12, [0, 11], "query: ", "", "passage: "),
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
    layers_or_strategy = student.student_layers if student.student_layers is not None else student.layer_strategy
    model = from_teacher(student.teacher, layers_or_strategy, student.num_student_layers, **student.student_kwargs)
    assert model.config.student_layers == layers and model.config.pooling_mode == pooling
    assert (model.config.query_prompt, model.config.student_prompt) == (query_prompt, student_prompt)
    assert model.config.document_prompt == document_prompt
    queries = ["what is dense retrieval"]
    assert model.tokenize_queries(queries)["input_ids"] == model.tokenizer([student_prompt + queries[0]])["input_ids"]


@pytest.mark.parametrize(
    "line, message",
    [
        ("per_device_train_batch_size: 16.7", r"c.yaml: per_device_train_batch_size takes int, got 16.7\."),
        ("learning_rate: fast", r"c.yaml: learning_rate takes float, got 'fast'\."),
        ("seed: 1.5", r"c.yaml: seed takes int, got 1.5\."),
        ("bf16: maybe", r"c.yaml: bf16 takes bool, got 'maybe'\."),
        ("lr_scheduler_type: fastest", r"c.yaml: lr_scheduler_type must be one of \[.*'linear'.*\], got 'fastest'"),
    ],
)
def test_config_values_are_typed_as_on_the_command_line_and_name_the_file(tmp_path, line, message):
    config = tmp_path / "c.yaml"
    config.write_text(f"{line}\ntrain_queries: q.txt\noutput_dir: {tmp_path / 'out'}\n")
    with pytest.raises(ValueError, match=message):
        parse_args(TYPES, [str(config)])
    config.write_text(f"learning_rate: 1.0e-3\nbf16: false\ntrain_queries: q.txt\noutput_dir: {tmp_path / 'out'}\n")
    assert parse_args(TYPES, [str(config)])[2].learning_rate == 1e-3  # YAML's float and bool read as they are


def test_config_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        parse_args(TYPES, [str(tmp_path / "nope.yaml")])
    bad = tmp_path / "bad.yaml"
    bad.write_text("teachr: x\n")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['teachr'\]"):
        parse_args(TYPES, [str(bad)])


def test_student_layers_auto_or_indices(tmp_path):
    config = tmp_path / "auto.yaml"
    config.write_text(f"student_layers: auto\nnum_student_layers: 3\ntrain_queries: q.tsv\noutput_dir: {tmp_path}\n")
    student, _, _ = parse_args(TYPES, [str(config)])
    assert student.student_layers == "auto" and student.num_student_layers == 3
    required = ["--train_queries", "q.tsv", "--output_dir", str(tmp_path / "out")]
    with pytest.raises(ValueError, match=r"student_layers must be 0-based layer indices .* got \['0', 'top'\]"):
        parse_args(TYPES, ["--student_layers", "0", "top", *required])
    with pytest.raises(ValueError, match=r"layer_strategy must be one of .* got 'auto'; .* `--student_layers auto`"):
        parse_args(TYPES, ["--layer_strategy", "auto", *required])


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("learning_rate", "-1e-4", "learning_rate must be a finite number > 0, got -0.0001"),
        ("learning_rate", "nan", "learning_rate must be a finite number > 0, got nan"),
        ("learning_rate", "inf", "learning_rate must be a finite number > 0, got inf"),
        ("num_train_epochs", "nan", "num_train_epochs and warmup_steps must be finite numbers >= 0, got nan"),
        ("max_steps", "0", "max_steps=0 with num_train_epochs=3.0 trains no step"),
        ("num_train_epochs", "0", "max_steps=-1 with num_train_epochs=0.0 trains no step"),
        ("per_device_train_batch_size", "0", "per_device_train_batch_size must be at least 1, got 0"),
        ("per_device_eval_batch_size", "0", "per_device_eval_batch_size must be at least 1, got 0"),
        ("num_eval_queries", "0", "num_eval_queries must be at least 1, got 0"),
        ("teacher_batch_size", "-2", "teacher_batch_size must be at least 1, got -2"),
        ("max_train_samples", "0", "max_train_samples must be at least 1, got 0"),
    ],
)
def test_settings_that_cannot_train_are_rejected_when_parsed(tmp_path, option, value, message):
    with pytest.raises(ValueError, match=message):
        parse_args(TYPES, ["--train_queries", "q.tsv", "--output_dir", str(tmp_path), f"--{option}={value}"])


def test_zero_layers_mean_the_same_student_in_yaml_on_the_command_line_and_in_python(tmp_path, tiny_teacher):
    config = tmp_path / "zero.yaml"
    config.write_text(f"teacher: {tiny_teacher}\nstudent_layers: []\ntrain_queries: q.tsv\noutput_dir: {tmp_path}\n")
    from_yaml, _, _ = parse_args(TYPES, [str(config)])
    from_cli, _, _ = parse_args(TYPES, ["--teacher", tiny_teacher, "--num_student_layers", "0", "--train_queries",
                                        "q.tsv", "--output_dir", str(tmp_path)])  # fmt: skip
    assert from_yaml.student_layers == [] and from_cli.student_layers is None
    for model in (
        from_teacher(tiny_teacher, from_yaml.student_layers),
        from_teacher(tiny_teacher, from_cli.layer_strategy, from_cli.num_student_layers),
        from_teacher(tiny_teacher, []),
    ):
        assert model.config.student_layers == [] and len(model.query_encoder.encoder.layer) == 0
    with pytest.raises(ValueError, match="num_student_layers=-1 must be between 0 and the teacher's 4 layers"):
        from_teacher(tiny_teacher, "top_bottom", -1)


def test_pickled_training_arguments_hold_no_hub_token(tmp_path):
    import pickle

    args = EmbeddingAlignmentConfig(output_dir=str(tmp_path), hub_token="hf_MARKER", report_to="none")
    restored = pickle.loads(pickle.dumps(args))
    assert b"hf_MARKER" not in pickle.dumps(args) and restored.hub_token is None
    assert args.hub_token == "hf_MARKER" and restored.learning_rate == args.learning_rate  # the live run keeps it


def test_usage_doc_lists_every_option_as_the_dataclasses_define_it():
    from hfdistill.cli import options_reference

    usage = (ROOT / "docs" / "usage.md").read_text()
    generated = usage.split('print(options_reference())" -->\n', 1)[1].split("<!-- end of generated options -->")[0]
    assert generated == options_reference(), "regenerate docs/usage.md's options (see CONTRIBUTING.md)"
    assert "| `--student_query_prompt` | `None` |" in generated and "| `--loss` | `'cosine'` |" in generated


def test_a_push_names_its_repository_before_the_run_as_trainer_would(tmp_path, monkeypatch):
    out = tmp_path / "out" / "minilm-2L"
    pushed = EmbeddingAlignmentConfig(output_dir=str(out), push_to_hub=True, report_to="none")
    assert pushed.hub_model_id == "minilm-2L"  # what the run checks access to is what Trainer creates
    out.mkdir(parents=True)
    monkeypatch.chdir(out.parent)
    assert EmbeddingAlignmentConfig(output_dir=".", push_to_hub=True, report_to="none").hub_model_id == "out"
    named = EmbeddingAlignmentConfig(output_dir=".", push_to_hub=True, hub_model_id="me/s", report_to="none")
    assert named.hub_model_id == "me/s" and EmbeddingAlignmentConfig(output_dir=".").hub_model_id is None


def test_config_option_abbreviations_and_a_broken_config_file(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"teacher: my/teacher\ntrain_queries: q.tsv\noutput_dir: {tmp_path / 'out'}\n")
    student, data, _ = parse_args(TYPES, ["--config", str(config), "--teacher", "other/teacher"])
    assert student.teacher == "other/teacher" and data.train_queries == "q.tsv"
    with pytest.raises(ValueError, match=r"not used by the HfArgumentParser: \['--learning_rat'"):
        parse_args(TYPES, [str(config), "--learning_rat", "1e-3"])  # argparse would take it for --learning_rate
    config.write_text("teacher: [unclosed\n")
    with pytest.raises(ValueError, match=r"c.yaml: not a YAML file \(line 2\)"):
        parse_args(TYPES, [str(config)])
    with pytest.raises(ValueError, match="--config needs a YAML file"):
        parse_args(TYPES, ["--config"])
