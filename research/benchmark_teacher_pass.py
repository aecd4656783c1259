"""How fast the teacher embeds training queries: in file order against length-sorted batches, side by side on the
same real queries in one process (medians of repeats).

python -m research.benchmark_teacher_pass --teacher sentence-transformers/all-MiniLM-L6-v2 \
    --queries ../shared/data/queries/train_queries.tsv.gz --num_queries 8192 --output_file out/teacher_pass.json
"""

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hfdistill import from_teacher
from hfdistill.cli import input_errors, parse_args
from hfdistill.data import load_queries


@dataclass
class TeacherPassArguments:
    teacher: str = field(metadata={"help": "Hub id or local path of the teacher."})
    queries: str = field(metadata={"help": "Query file (.tsv/.jsonl/.txt[.gz]); its first queries are embedded."})
    num_queries: int = field(default=8192, metadata={"help": "How many queries each pass embeds."})
    batch_size: int = field(default=64, metadata={"help": "Teacher batch size (the recipe's teacher_batch_size)."})
    repeats: int = field(default=3, metadata={"help": "Timed passes per order (median reported)."})
    threads: int | None = field(default=None, metadata={"help": "torch threads (default: torch's choice)."})
    output_file: str | None = field(default=None, metadata={"help": "Also write the results here as JSON."})


def main(args: TeacherPassArguments) -> dict:
    with input_errors():
        queries = load_queries(args.queries)[: args.num_queries]
    if args.threads:
        torch.set_num_threads(args.threads)
    model = from_teacher(args.teacher, "first", 1)
    encode, size = model.encode_teacher_queries, args.batch_size
    batches = [queries[i : i + size] for i in range(0, len(queries), size)]
    orders = {  # each call sorts only what it is given: one batch per call keeps the file's order
        "file order": lambda: torch.cat([encode(batch, batch_size=size) for batch in batches]),
        "length-sorted": lambda: encode(queries, batch_size=size),
    }
    encode(queries[: 4 * size], batch_size=size)  # warm-up
    seconds = {name: [] for name in orders}
    outputs = {}
    for _ in range(args.repeats):  # interleaved, so drifts of the machine hit both orders alike
        for name, run in orders.items():
            start = time.perf_counter()
            outputs[name] = run()
            seconds[name].append(time.perf_counter() - start)
    rates = {name: len(queries) / statistics.median(times) for name, times in seconds.items()}
    results = {
        "teacher": args.teacher,
        "queries": len(queries),
        "batch_size": size,
        "threads": torch.get_num_threads(),
        "queries_per_second": rates,
        "speed_up": rates["length-sorted"] / rates["file order"],
        "max_abs_difference": float((outputs["file order"] - outputs["length-sorted"]).abs().max()),
    }
    print(f"{args.teacher}: {len(queries)} queries, batch {size}, {results['threads']} threads")
    for name, rate in rates.items():
        print(f"  {name:>14}: {rate:8.1f} queries/s (median of {args.repeats})")
    print(f"  length sorting: {results['speed_up']:.2f}x; max |difference| {results['max_abs_difference']:.1e}")
    if args.output_file:
        Path(args.output_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_file).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    with input_errors():
        arguments = parse_args((TeacherPassArguments,))
    main(*arguments)
