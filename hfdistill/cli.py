"""Command-line parsing for recipes: an optional YAML config, then `--key value` overrides (as TRL's recipes)."""

import sys
from pathlib import Path

import yaml
from transformers import HfArgumentParser


def parse_args(dataclass_types: tuple, argv: list[str] | None = None) -> tuple:
    """Parse `[config.yaml] [--key value ...]` into the given dataclasses; command-line values win over the file."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(dataclass_types)
    if argv and argv[0].endswith((".yaml", ".yml")):
        path = Path(argv.pop(0))
        if not path.is_file():
            raise FileNotFoundError(f"Config file {str(path)!r} does not exist.")
        config = yaml.safe_load(path.read_text()) or {}
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"{path}: unknown option(s) {unknown}.")
        parser.set_defaults(**config)
    return parser.parse_args_into_dataclasses(args=argv)


def options_reference(dataclass_types: tuple | None = None) -> str:
    """The recipes' options as Markdown tables, one per dataclass, from the fields' `help` (docs/usage.md holds this
    text, and a test keeps it equal). For `TrainingArguments` subclasses only the fields they declare are listed."""
    from dataclasses import MISSING, fields

    from transformers import TrainingArguments

    from .training_args import AlignmentTrainingArguments, QueryDataArguments, StudentArguments

    inherited = {f.name: f for f in fields(TrainingArguments)}
    sections = []
    for cls in dataclass_types or (StudentArguments, QueryDataArguments, AlignmentTrainingArguments):
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
