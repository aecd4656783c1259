"""Retention per task and per language of several students, as one Markdown table (docs/results.md's index tables).

    python -m research.language_table --runs "query-only=runs/e5-2L" "de paragraphs=runs/e5-2L-de" \
        --output research/results/index-adaptation/table.md

Each run folder holds the `eval_results.json` of `recipes/evaluate.py` (or of the peer recipe) over the same tasks;
the table has one row per run: retention on each task, the mean over the development sets (scifact,
msmarco-sub5k), the mean over XQuAD's languages and its lowest language.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from hfdistill.cli import parse_args
from hfdistill.run_files import EVAL_RESULTS

DEV = ("scifact", "msmarco-sub5k")
XQUAD = ("en", "de", "es", "zh", "hi", "ar")


@dataclass
class TableArguments:
    runs: list[str] = field(metadata={"help": "`label=folder` of each run (its eval_results.json)."})
    output: str | None = field(default=None, metadata={"help": "Also write the table to this file."})


def retention_row(report: dict) -> dict[str, float]:
    """Retention per task, with `dev` (the mean of scifact and msmarco-sub5k), `xquad` (the mean over XQuAD's
    languages) and `xquad min` where the report holds them."""
    row = {name: task["retention"] for name, task in report["tasks"].items()}
    for label, names in (("dev", DEV), ("xquad", [f"xquad-{code}" for code in XQUAD])):
        if all(name in row for name in names):
            row[label] = sum(row[name] for name in names) / len(names)
    if "xquad" in row:
        row["xquad min"] = min(row[f"xquad-{code}"] for code in XQUAD)
    return row


def table(rows: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one row per label, one column per key any row has (dev and XQuAD summaries last)."""
    summaries = ["dev", "xquad", "xquad min"]
    columns = [c for c in dict.fromkeys(k for row in rows.values() for k in row) if c not in summaries]
    columns += [c for c in summaries if any(c in row for row in rows.values())]
    lines = ["| student | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for label, row in rows.items():
        cells = [f"{100 * row[c]:.1f}%" if c in row else "–" for c in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(args: TableArguments) -> str:
    rows = {}
    for run in args.runs:
        label, _, folder = run.rpartition("=")
        rows[label or folder] = retention_row(json.loads((Path(folder) / EVAL_RESULTS).read_text()))
    text = table(rows)
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
    return text


if __name__ == "__main__":
    main(*parse_args((TableArguments,)))
