"""Table and plot of a set of distilled students: retention per task, query speed-up, and the layer-selection proxy.

    python -m research.study_report --runs runs/minilm-study/* --speed runs/speed/* --output_dir docs/results

Each run folder holds the `eval_results.json` of recipes/evaluate.py and, for a distilled student, the
`distillation.json` of recipes/distill.py (a truncated student saved without training has none: a floor row).
Speed depends only on the number of kept layers, so each run takes the speed-up of the `speed_results.json`
(recipes/benchmark.py) measured for a student with as many layers.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from scipy.stats import spearmanr

from hfdistill.benchmark import SpeedResults
from hfdistill.cli import parse_args
from hfdistill.run_files import EVAL_RESULTS, SPEED_RESULTS, TRAINING_RECORD


@dataclass
class ReportArguments:
    runs: list[str] = field(metadata={"help": "Run folders (eval_results.json + distillation.json)."})
    speed: list[str] = field(default_factory=list, metadata={"help": "speed_results.json files or their folders."})
    batch_sizes: list[int] = field(default_factory=lambda: [1, 32], metadata={"help": "Speed-up columns."})
    output_dir: str = field(default="docs/results", metadata={"help": "Where the table and the plot are written."})


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run recipes/distill.py and recipes/evaluate.py on that folder.")
    return json.loads(path.read_text())


def speedups_by_depth(paths: list[str]) -> dict[int, dict[str, float]]:
    """Throughput speed-up per batch size, keyed by the student's number of layers."""
    table = {}
    for path in map(Path, paths):
        results = SpeedResults.from_dict(read_json(path / SPEED_RESULTS if path.is_dir() else path))
        student = results.encoder("student")
        table[len(results.student_layers)] = {batch: results.speedup(student, batch) for batch in results.batch_sizes}
    return table


def collect_rows(runs: list[str], speed: dict[int, dict[str, float]]) -> list[dict]:
    rows = []
    for run in map(Path, runs):
        evaluation = read_json(run / EVAL_RESULTS)
        trained = (run / TRAINING_RECORD).is_file()  # a truncated student saved without training has no record
        record = read_json(run / TRAINING_RECORD) if trained else {}
        layers = evaluation["student_layers"]
        rows.append(
            {
                "name": run.name,
                "layers": layers,
                "trained": trained,
                "retention": {task: result["retention"] for task, result in evaluation["tasks"].items()},
                "mean_retention": evaluation["mean_retention"],
                "proxy": record.get("untrained_mean_cosine"),
                "mean_cosine": record.get("mean_cosine"),
                "speedup": speed.get(len(layers), {}),
            }
        )
    return sorted(rows, key=lambda row: (len(row["layers"]), -row["mean_retention"]))


def proxy_correlation(rows: list[dict]) -> dict[str, float]:
    """Spearman rank correlation between the untrained alignment proxy and mean retention, per layer budget."""
    rows = [row for row in rows if row["proxy"] is not None]
    depths = {len(row["layers"]) for row in rows}
    groups = {f"{depth} layers": [row for row in rows if len(row["layers"]) == depth] for depth in depths}
    correlations = {}
    for name, group in sorted({**groups, "all": rows}.items()):
        if len({row["proxy"] for row in group}) >= 3:  # ablations of one layer set share a proxy: nothing to rank
            rho = spearmanr([row["proxy"] for row in group], [row["mean_retention"] for row in group]).statistic
            correlations[f"{name} ({len(group)} students)"] = float(rho)
    return correlations


def markdown_table(rows: list[dict], batch_sizes: list[int]) -> str:
    tasks = list(rows[0]["retention"])
    header = ["student", "layers", *tasks, "mean retention", "untrained cosine (proxy)", "trained cosine"] + [
        f"speed-up b{b}" for b in batch_sizes
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        speed = [f"{row['speedup'][str(b)]:.2f}x" if str(b) in row["speedup"] else "–" for b in batch_sizes]
        cells = [
            row["name"],
            str(row["layers"]),
            *(f"{100 * row['retention'][task]:.1f}%" for task in tasks),
            f"**{100 * row['mean_retention']:.1f}%**",
            *("–" if value is None else f"{value:.4f}" for value in (row["proxy"], row["mean_cosine"])),
            *speed,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], batch_size: int, path: Path) -> None:
    """Mean retention against query speed-up, one point per student, the teacher at (1.0, 100%)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([1.0], [100.0], marker="*", s=160, color="black")
    ax.annotate("teacher", (1.0, 100.0), textcoords="offset points", xytext=(6, -10))
    for row in rows:
        if str(batch_size) not in row["speedup"]:
            continue
        x, y = row["speedup"][str(batch_size)], 100 * row["mean_retention"]
        ax.scatter([x], [y], color=f"C{len(row['layers'])}")
        label = str(row["layers"]) + ("" if row["trained"] else " untrained")
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 3), fontsize=8)
    ax.set_xlabel(f"query throughput speed-up over the teacher (batch {batch_size}, CPU)")
    ax.set_ylabel("mean nDCG@10 retention (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(args: ReportArguments) -> None:
    rows = collect_rows(args.runs, speedups_by_depth(args.speed))
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows, args.batch_sizes)
    correlations = proxy_correlation(rows)
    (output_dir / "study_table.md").write_text(table)
    summary = {"rows": rows, "proxy_spearman": correlations}
    (output_dir / "study_results.json").write_text(json.dumps(summary, indent=2))
    plot(rows, max(args.batch_sizes), output_dir / "retention_vs_speedup.png")
    print(table)
    for group, rho in correlations.items():
        print(f"Spearman(proxy, mean retention), {group}: {rho:.3f}")


if __name__ == "__main__":
    main(*parse_args((ReportArguments,)))
