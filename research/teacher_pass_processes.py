"""Time the teacher pass over the first N queries of a file, in however many processes this is launched with; run it
plainly and under `accelerate launch --num_processes 2` with two cache folders, then `--compare` the two caches.

    python -m research.teacher_pass_processes --queries ../shared/data/queries/train_queries.tsv.gz --cache_dir /tmp/c1
    accelerate launch --multi_gpu --num_processes 2 -m research.teacher_pass_processes --queries ... \
        --cache_dir /tmp/c2
    python -m research.teacher_pass_processes --queries ... --cache_dir /tmp/c1 --compare /tmp/c2
"""

import json
import time
from dataclasses import dataclass, field

import torch
from accelerate import PartialState

from hfdistill import from_teacher
from hfdistill.cli import parse_args
from hfdistill.data import load_queries
from hfdistill.teacher_pass import cached_teacher_embeddings


@dataclass
class TeacherPassArguments:
    queries: str = field(metadata={"help": "Query file."})
    cache_dir: str = field(metadata={"help": "A fresh cache folder (the pass is timed only when nothing is cached)."})
    teacher: str = field(default="sentence-transformers/all-MiniLM-L6-v2", metadata={"help": "Teacher."})
    num_queries: int = field(default=32768, metadata={"help": "How many of the file's first queries."})
    batch_size: int = field(default=64, metadata={"help": "Teacher batch size."})
    compare: str | None = field(default=None, metadata={"help": "Another cache folder of the same pass to compare."})


def main(args: TeacherPassArguments) -> None:
    state = PartialState(cpu=True)
    texts = load_queries(args.queries)[: args.num_queries]
    model = from_teacher(args.teacher, "first", 1)
    start = time.perf_counter()
    embeddings = cached_teacher_embeddings(model, texts, args.cache_dir, args.batch_size)
    seconds = time.perf_counter() - start
    if args.compare:
        other = cached_teacher_embeddings(model, texts, args.compare, args.batch_size)
        difference = float((embeddings - other).abs().max())
        print(json.dumps({"max_abs_difference": difference, "rows": len(texts)}))
    elif state.is_main_process:
        rate = round(len(texts) / seconds, 1)
        print(json.dumps({"processes": state.num_processes, "threads": torch.get_num_threads(), "queries": len(texts),
                          "seconds": round(seconds, 1), "queries_per_second": rate}))  # fmt: skip


if __name__ == "__main__":
    main(*parse_args((TeacherPassArguments,)))
