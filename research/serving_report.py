"""Table and plot of serving options: each point is a query encoder (student or teacher) under a backend, with its
retention (recipes/evaluate.py, `--query_encoder` for exported ones) and its speed-up (recipes/benchmark.py
`--backends`) against the fp32 PyTorch teacher and against the teacher run by the same backend.

    python -m research.serving_report --output_dir docs/results/serving \
        --points "MiniLM [0, 5]|torch|student|runs/x/eval_results.json|runs/speed/speed_results.json" ...

A point is `label|backend|side|eval_results.json|speed_results.json`. Side: `student` or `teacher`, or, with backend
`torch`, another query encoder's name in speed_results.json (a baseline timed with `--query_encoders`).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from hfdistill.benchmark import SpeedResults
from hfdistill.cli import parse_args


@dataclass
class ServingReportArguments:
    points: list[str] = field(metadata={"help": "`label|backend|side|eval_results.json|speed_results.json` each."})
    output_dir: str = field(metadata={"help": "Where serving_table.md and retention_vs_speedup.png go."})
    batch_sizes: list[str] = field(default_factory=lambda: ["1", "32"], metadata={"help": "Speed-up columns."})


def row(point: str, batch_sizes: list[str]) -> dict:
    label, backend, side, eval_path, speed_path = point.split("|")
    evaluation = json.loads(Path(eval_path).read_text())
    speed = SpeedResults.from_dict(json.loads(Path(speed_path).read_text()))
    if side in ("student", "teacher"):
        encoder, same = speed.encoder(side, backend), backend
    else:  # a baseline timed beside them, against the torch teacher
        encoder, same = next(other for other in speed.others if other.name == side), "torch"
    return {
        "label": label,
        "backend": backend,
        "retention": {task: result["retention"] for task, result in evaluation["tasks"].items()},
        "mean_retention": evaluation["mean_retention"],
        "vs_torch_teacher": {bs: speed.speedup(encoder, bs) for bs in batch_sizes},
        "vs_same_backend_teacher": {bs: speed.speedup(encoder, bs, same) for bs in batch_sizes},
    }


def main(args: ServingReportArguments) -> None:
    rows = [row(point, args.batch_sizes) for point in args.points]
    tasks = list(rows[0]["retention"])
    speed_columns = [
        f"x {teacher} teacher, batch {bs}" for teacher in ("torch", "same-backend") for bs in args.batch_sizes
    ]
    header = ["query encoder", "backend", *[f"{task} retention" for task in tasks], "mean retention", *speed_columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * (len(header) - 2)]
    for r in rows:
        retention = [f"{100 * r['retention'][t]:.1f}%" for t in tasks] + [f"**{100 * r['mean_retention']:.1f}%**"]
        speed = [
            f"{r[key][bs]:.2f}x" for key in ("vs_torch_teacher", "vs_same_backend_teacher") for bs in args.batch_sizes
        ]
        lines.append("| " + " | ".join([r["label"], r["backend"], *retention, *speed]) + " |")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "serving_table.md").write_text("\n".join(lines) + "\n")
    (out / "serving_results.json").write_text(json.dumps(rows, indent=2))
    print("\n".join(lines))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    figure, axis = plt.subplots(figsize=(11, 4.8))
    batch, colors = args.batch_sizes[-1], plt.get_cmap("tab20").colors
    for number, r in enumerate(rows):  # numbered in the plot and the legend: labels beside points would overlap
        x, y = r["vs_torch_teacher"][batch], 100 * r["mean_retention"]
        marker = {"torch": "o", "onnx": "s", "onnx-int8": "^"}.get(r["backend"], "x")
        label = f"{number + 1}. {r['label']} ({r['backend']})"
        axis.scatter(x, y, s=60, color=colors[number % len(colors)], marker=marker, label=label)
        axis.annotate(str(number + 1), (x, y), textcoords="offset points", xytext=(5, 3), fontsize=8)
    axis.set_xscale("log")
    axis.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}x"))
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    axis.set_xlabel(f"query speed-up over the fp32 PyTorch teacher (batch {batch}, log scale)")
    axis.set_ylabel("mean retention of nDCG@10 (%)")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out / "retention_vs_speedup.png", dpi=120)


if __name__ == "__main__":
    main(*parse_args((ServingReportArguments,)))
