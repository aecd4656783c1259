"""Score students on BEIR/MTEB retrieval against their teacher (nDCG@10 retention, as in the paper).

    python recipes/evaluate.py --model out/minilm-2L --tasks scifact msmarco-sub5k --data_dir ../shared/data/beir \
        --output_dir out/minilm-2L/eval

Queries are encoded by the student, documents by the frozen teacher; document embeddings and the teacher's own scores
are cached, so a second student (or `--model a b c`) re-encodes only queries.
"""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from accelerate import PartialState

from hfdistill import load_student
from hfdistill.cli import input_errors, parse_args, setup_logging
from hfdistill.embedding_cache import DEFAULT_CACHE_DIR
from hfdistill.evaluation import evaluate_student, format_report
from hfdistill.preflight import check_device
from hfdistill.query_encoders import SentenceTransformerQueryEncoder, load_query_encoder
from hfdistill.retrieval_tasks import resolve_task
from hfdistill.run_files import EVAL_RESULTS, EXPORTED_EVAL_RESULTS


@dataclass
class EvaluationArguments:
    model: list[str] = field(metadata={"help": "Student paths or Hub ids (several share one document encoding)."})
    tasks: list[str] = field(
        metadata={"help": "Folders under --data_dir, or mteb retrieval task names (e.g. SciFact, NFCorpus)."}
    )
    data_dir: str | None = field(default=None, metadata={"help": "Folder of BEIR-format datasets."})
    languages: list[str] = field(
        default_factory=list,
        metadata={
            "help": "The language of each local task, as `task=code` (e.g. `xquad-de=de scifact=en`): recorded "
            "with its scores, and on the model card (mteb's tasks know their own)."
        },
    )
    output_dir: str = field(default="out/eval", metadata={"help": "Where eval_results.json is written."})
    cache_dir: str = field(default=DEFAULT_CACHE_DIR, metadata={"help": "Teacher embedding cache."})
    batch_size: int = field(default=64, metadata={"help": "Encoding batch size."})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ... (default: the accelerator, if any)."})
    query_encoder: str | None = field(
        default=None,
        metadata={
            "help": "A query encoder to score instead of the student's torch one, against --model's teacher: the "
            "student's export (recipes/export.py), or a sentence-transformers model in the teacher's space (e.g. "
            "research/model2vec_baseline.py)."
        },
    )
    cascade_rate: float | None = field(
        default=None,
        metadata={
            "help": "Score a cascade instead of the student alone: the teacher's query encoder takes this share of "
            "each task's queries, those the student is least sure of (hfdistill.CascadeQueryEncoder, its threshold "
            "set from the task's own queries, no labels)."
        },
    )

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"--batch_size must be at least 1, got {self.batch_size}.")
        if self.cascade_rate is not None and not 0 <= self.cascade_rate <= 1:
            raise ValueError(
                f"--cascade_rate is the share of queries the teacher encodes, 0 to 1; got {self.cascade_rate}."
            )


def task_language_map(pairs: list[str], tasks: list[str]) -> dict[str, list[str]]:
    """`{task: [code, ...]}` from `task=code[,code]` pairs, each naming one of `tasks`."""
    languages = {}
    for pair in pairs:
        name, _, codes = pair.partition("=")
        if name not in tasks or not codes:
            raise ValueError(
                f"--languages {pair!r}: give `task=code` for one of --tasks {tasks}, e.g. `{tasks[0]}=en`."
            )
        languages[name] = codes.split(",")
    return languages


def results_backend(args: EvaluationArguments, query_encoder) -> str | None:
    """What was scored, when it is not the student's own PyTorch query encoder: its export's backend, a cascade
    (`cascade`, or `cascade-<backend>` with an export as its student), or None."""
    backend = query_encoder.backend if query_encoder is not None else None
    if args.cascade_rate is None:
        return backend
    return f"cascade-{backend}" if backend else "cascade"


def main(args: EvaluationArguments) -> list[dict]:
    with input_errors():  # a bad task, model or exported encoder fails before any encoding
        languages = task_language_map(args.languages, args.tasks)
        tasks = [resolve_task(name, args.data_dir, languages.get(name)) for name in args.tasks]
        if args.query_encoder and len(args.model) != 1:
            raise ValueError("--query_encoder scores one query encoder: give one --model (whose teacher indexes).")
        check_device(args.device)
        device = args.device or str(PartialState().device)
        query_encoder = load_query_encoder(args.query_encoder, device=device) if args.query_encoder else None
        students = {name: load_student(name) for name in args.model}
    reports, baseline = [], isinstance(query_encoder, SentenceTransformerQueryEncoder)  # not the student's own
    for name, model in students.items():
        report = evaluate_student(
            model.to(device),
            args.query_encoder if baseline else name,
            tasks,
            args.cache_dir,
            args.batch_size,
            query_encoder,
            args.cascade_rate,
        )
        if query_encoder is not None:
            report["query_encoder"] = {"path": args.query_encoder, **query_encoder.config}
        if baseline:
            report["student_layers"] = None  # not layers of the teacher: a model of its own
        print(format_report(report))
        out = Path(args.output_dir)
        if len(args.model) > 1:
            out = out / re.sub(r"[^\w.-]+", "_", name).strip("_")
        out.mkdir(parents=True, exist_ok=True)
        results_file = (
            EXPORTED_EVAL_RESULTS.format(backend)
            if (backend := results_backend(args, query_encoder))
            else EVAL_RESULTS
        )
        (out / results_file).write_text(json.dumps(report, indent=2))
        reports.append(report)
    print(
        f"Next, time it against its teacher: python recipes/benchmark.py --model {args.model[0]} --queries <your "
        f"queries> --output_dir {args.model[0]}"
    )
    return reports


if __name__ == "__main__":
    setup_logging()
    with input_errors():
        arguments = parse_args((EvaluationArguments,))
    main(*arguments)
