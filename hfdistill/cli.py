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
