"""Benchmark query-encoding speed of a student against its teacher, side by side on real MS MARCO dev queries.

python recipes/benchmark.py --model out/minilm-2L --queries queries.tsv --output_dir out/minilm-2L --threads 2 \
    --backends torch onnx onnx-int8  # ONNX Runtime fp32 and int8 side by side (pip install 'hfdistill[onnx]')
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from hfdistill import load_student
from hfdistill.benchmark import BACKENDS, SpeedResults, format_speed, measure_speed
from hfdistill.cli import input_errors, parse_args, setup_logging
from hfdistill.data import load_queries
from hfdistill.preflight import check_device
from hfdistill.query_encoders import load_query_encoder
from hfdistill.run_files import SPEED_RESULTS


@dataclass
class BenchmarkArguments:
    model: str = field(metadata={"help": "Student path or Hub id."})
    queries: str = field(metadata={"help": "Query file (.tsv/.jsonl/.txt[.gz]), e.g. MS MARCO dev queries."})
    device: str = field(default="cpu", metadata={"help": "cpu or cuda."})
    threads: int | None = field(default=None, metadata={"help": "torch threads (default: torch's choice)."})
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32, 128], metadata={"help": "Batch sizes."})
    repeats: int = field(default=5, metadata={"help": "Timed passes per batch size (median reported)."})
    backends: list[str] = field(
        default_factory=lambda: ["torch"], metadata={"help": f"Runtimes of teacher and student: {BACKENDS}."}
    )
    query_encoders: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Other query encoders timed beside them, e.g. a baseline: sentence-transformers models or "
            "recipes/export.py folders."
        },
    )
    output_dir: str = field(default="out/benchmark", metadata={"help": "Where speed_results.json is written."})

    def __post_init__(self):
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"--batch_sizes must be whole numbers >= 1, got {self.batch_sizes}.")
        if self.repeats < 1:
            raise ValueError(f"--repeats must be at least 1 (timed passes per batch size), got {self.repeats}.")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {self.threads}.")


def main(args: BenchmarkArguments) -> SpeedResults:
    with input_errors():
        check_device(args.device)
        model = load_student(args.model).to(args.device)
        queries = load_queries(args.queries)
        others = {path: load_query_encoder(path, args.threads, args.device) for path in args.query_encoders}
        results = measure_speed(
            model,
            queries,
            tuple(args.batch_sizes),
            args.repeats,
            args.threads,
            backends=args.backends,
            other_encoders={path: encoder.encode_queries for path, encoder in others.items()},
        )
    results.model = args.model
    print(f"{args.model} vs {results.teacher} on {results.device}, {results.threads} threads")
    print(format_speed(results))
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(args.output_dir) / SPEED_RESULTS).write_text(json.dumps(results.to_dict(), indent=2))
    print(f"Next, publish it with its card: python recipes/push.py --model {args.model} --repo_id <user>/<name>")
    return results


if __name__ == "__main__":
    setup_logging()
    with input_errors():
        arguments = parse_args((BenchmarkArguments,))
    main(*arguments)
