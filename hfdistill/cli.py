"""Command-line parsing for recipes: an optional YAML config, then `--key value` overrides (as TRL's recipes)."""

import argparse
import logging
import sys
from contextlib import contextmanager
from pathlib import Path

import yaml
from transformers import HfArgumentParser

LOG_FORMAT = "%(asctime)s %(name)s: %(message)s"
NOISY_LOGGERS = ("mteb", "httpx", "httpcore", "urllib3", "datasets", "sentence_transformers")


def setup_logging(level: int | str = logging.INFO) -> None:
    """A recipe's logging: hfdistill's own progress at `level` (`--log_level` where the recipe has it); transformers'
    weight loading and saving bars, and the INFO lines of mteb, the Hub's HTTP client, datasets and
    sentence-transformers, only at `debug`."""
    import transformers

    level = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    logging.basicConfig(format=LOG_FORMAT, level=level, force=True)
    transformers.utils.logging.set_verbosity(max(level, logging.WARNING))
    if level > logging.DEBUG:
        transformers.utils.logging.disable_progress_bar()
        for name in NOISY_LOGGERS:
            logging.getLogger(name).setLevel(max(level, logging.WARNING))


@contextmanager
def input_errors():
    """Bad input (`ValueError`, `OSError`: a setting, a file, a teacher that cannot be read; a `PushError`; an
    `ImportError` naming a missing extra) ends a recipe with one line naming the problem, not a traceback. Recipes
    wrap what they check before any expensive work in it."""
    from .hub import PushError

    try:
        yield
    except (ValueError, OSError, ImportError, PushError) as error:
        raise SystemExit(f"error: {error}") from None


def parse_args(dataclass_types: tuple, argv: list[str] | None = None) -> tuple:
    """Parse `[config.yaml] [--key value ...]` (or `--config config.yaml`, as TRL's parser takes it) into the given
    dataclasses; command-line values win over the file, and a value in the file satisfies a required option. Options
    are never abbreviated: `--learning_rat` is an error, not `--learning_rate`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(dataclass_types, allow_abbrev=False)
    config_file = None
    if argv and argv[0].endswith((".yaml", ".yml")):
        config_file = argv.pop(0)
    elif "--config" in argv:
        index = argv.index("--config")
        if index + 1 >= len(argv):
            raise ValueError("--config needs a YAML file.")
        config_file = argv[index + 1]
        del argv[index : index + 2]
    if config_file is not None:
        config = read_config(Path(config_file))
        known = {action.dest: action for action in parser._actions}
        unknown = sorted(set(config) - set(known))
        if unknown:
            raise ValueError(f"{config_file}: unknown option(s) {unknown}.")
        for name in config:
            known[name].required = False
        parser.set_defaults(**{name: _typed(known[name], value, config_file) for name, value in config.items()})
    return parser.parse_args_into_dataclasses(args=argv)


def _typed(action, value, config_file: str):
    """A config file's value as the command line would parse it (each item of a list), or one error naming the file,
    the option and what it takes: YAML's own types are never trusted (`16.7` for a batch size, `fast` for a rate)."""
    if value is None or action.type is None:
        return value
    items = value if isinstance(value, list) else [value]  # a list where one value is expected: its dataclass decides
    try:
        typed = [action.type(str(item)) for item in items]
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        kind = getattr(action.type, "__name__", "a value").replace("string_to_bool", "bool")
        raise ValueError(f"{config_file}: {action.dest} takes {kind}, got {value!r}.") from None
    if action.choices is not None and any(item not in action.choices for item in typed):
        raise ValueError(f"{config_file}: {action.dest} must be one of {list(action.choices)}, got {value!r}.")
    return typed if isinstance(value, list) else typed[0]


def read_config(path: Path) -> dict:
    """A YAML config file's options; one error naming the file when it is missing or not a YAML mapping."""
    if not path.is_file():
        raise FileNotFoundError(f"Config file {str(path)!r} does not exist.")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        where = getattr(error, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ValueError(f"{path}: not a YAML file{line}: {getattr(error, 'problem', None) or error}.") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a config is a mapping of option names to values, got {type(config).__name__}.")
    return config


def options_reference(dataclass_types: tuple | None = None) -> str:
    """The recipes' options as Markdown tables, one per dataclass, from the fields' `help` (docs/usage.md holds this
    text, and a test keeps it equal). For `TrainingArguments` subclasses only the fields they declare are listed."""
    from dataclasses import MISSING, fields

    from transformers import TrainingArguments

    from .training_args import (
        EmbeddingAlignmentConfig,
        PublishCheckArguments,
        QueryDataArguments,
        StudentArguments,
    )

    inherited = {f.name: f for f in fields(TrainingArguments)}
    sections = []
    classes = (StudentArguments, QueryDataArguments, EmbeddingAlignmentConfig, PublishCheckArguments)
    for cls in dataclass_types or classes:
        rows = [f"### `{cls.__name__}`", "", "| option | default | what |", "|---|---|---|"]
        for f in fields(cls):
            if (
                f.name in inherited
                and f.metadata == inherited[f.name].metadata
                and f.default == inherited[f.name].default
            ):
                continue  # transformers' own TrainingArguments field, documented there
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            default = "required" if default is MISSING else f"`{default!r}`"
            rows.append(f"| `--{f.name}` | {default} | {f.metadata.get('help', '').replace('|', '/')} |")
        sections.append("\n".join(rows))
    return "\n\n".join(sections) + "\n"
