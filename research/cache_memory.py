"""Peak memory (RSS) of a distillation run against the number of cached training queries.

Writes N synthetic queries and random unit-norm "teacher" embeddings of them straight into the cache (the real
teacher pass is skipped: memory does not depend on the values), then runs recipes/distill.py for a few hundred steps
in a child process and reports the child's peak RSS (its VmHWM, polled while it runs), and the most anonymous and
file-backed resident memory seen while polling (file-backed pages are mapped files: the page cache, which the kernel
frees as it needs).

    python -m research.cache_memory --num_queries 100000 --work_dir runs/cache-memory
    python -m research.cache_memory --num_queries 5000000 --work_dir runs/cache-memory
"""

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hfdistill import from_teacher
from hfdistill.cli import parse_args
from hfdistill.data import load_query_splits
from hfdistill.embedding_cache import EMBEDDING_DTYPES
from hfdistill.teacher_pass import write_teacher_embeddings
from hfdistill.training_args import QueryDataArguments

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class CacheMemoryArguments:
    num_queries: int = field(metadata={"help": "Synthetic training queries (plus 2,000 held out)."})
    work_dir: str = field(metadata={"help": "Where the queries, cache and run go."})
    teacher: str = field(default="sentence-transformers/all-MiniLM-L6-v2", metadata={"help": "Teacher (its shape)."})
    embedding_dtype: str = field(default="float16", metadata={"help": "Cache storage dtype."})
    max_steps: int = field(default=300, metadata={"help": "Training steps of the measured run."})


def _memory_kib(pid: int) -> dict[str, int]:
    """A running process's peak resident set size (VmHWM) and its resident anonymous and file-backed memory now
    (RssAnon, RssFile), in KiB; {} once it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    fields = ("VmHWM", "RssAnon", "RssFile")
    return {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines() if line.startswith(fields)}


def main(args: CacheMemoryArguments) -> dict:
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    queries = work / f"queries-{args.num_queries}.txt"
    if not queries.is_file():
        words = ["what", "is", "the", "best", "way", "to", "cook", "rice", "near", "me", "cost", "of", "a", "car"]
        generator = torch.Generator().manual_seed(0)
        picks = torch.randint(len(words), (args.num_queries + 2000, 6), generator=generator).tolist()
        queries.write_text("".join(f"{' '.join(words[w] for w in row)} {i}\n" for i, row in enumerate(picks)))
    data = QueryDataArguments(str(queries), num_eval_queries=2000, embedding_dtype=args.embedding_dtype)
    train, _ = load_query_splits(data, seed=42)  # the recipe's split, so the recipe finds these embeddings
    model = from_teacher(args.teacher, [0, 5])
    cache = work / "cache"
    start = time.perf_counter()
    dtype = EMBEDDING_DTYPES[args.embedding_dtype]
    embeddings = torch.empty(len(train), model.config.embedding_dim, dtype=dtype)  # filled in blocks: 5M rows fit
    for first in range(0, len(train), 1_000_000):
        block = torch.randn(min(1_000_000, len(train) - first), model.config.embedding_dim)
        embeddings[first : first + len(block)] = torch.nn.functional.normalize(block, dim=-1).to(dtype)
    path = write_teacher_embeddings(model, train, embeddings, cache, dtype=args.embedding_dtype)
    print(f"{len(train):,} synthetic embeddings written to {path} ({path.stat().st_size / 1e9:.2f} GB) "
          f"in {time.perf_counter() - start:.0f} s")  # fmt: skip
    del embeddings, train, model
    run = [sys.executable, str(ROOT / "recipes" / "distill.py"), "--teacher", args.teacher, "--student_layers", "0",
           "5", "--train_queries", str(queries), "--num_eval_queries", "2000", "--embedding_dtype",
           args.embedding_dtype, "--embedding_cache_dir", str(cache), "--max_steps", str(args.max_steps),
           "--eval_strategy", "no", "--save_strategy", "no", "--warmup_steps", "0", "--report_to", "none",
           "--disable_tqdm", "true", "--overwrite_output_dir", "true", "--output_dir",
           str(work / f"run-{args.num_queries}")]  # fmt: skip
    start = time.perf_counter()
    child = subprocess.Popen(run, cwd=ROOT)
    peaks = {"VmHWM": 0, "RssAnon": 0, "RssFile": 0}
    while child.poll() is None:  # the child's own high-water mark: getrusage(RUSAGE_CHILDREN) would also count the
        for name, kib in _memory_kib(child.pid).items():  # pages this (large) process held when it forked the child
            peaks[name] = max(peaks[name], kib)
        time.sleep(0.2)
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, run)
    seconds, gib = time.perf_counter() - start, {name: round(kib / 2**20, 3) for name, kib in peaks.items()}
    result = {"num_queries": args.num_queries, "embedding_dtype": args.embedding_dtype, "max_steps": args.max_steps,
              "peak_rss_gib": gib["VmHWM"], "max_anonymous_gib": gib["RssAnon"], "max_file_backed_gib": gib["RssFile"],
              "seconds": round(seconds, 1)}  # fmt: skip
    print(json.dumps(result))
    (work / f"memory-{args.num_queries}.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(*parse_args((CacheMemoryArguments,)))
