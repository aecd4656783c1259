"""Score query embeddings computed elsewhere (e.g. by an OpenVINO-served student in an environment where hfdistill does
not install: research.openvino_serving) against the student's teacher's documents: nDCG@10 and retention.

    python -m research.precomputed_queries --model out/e5-small-2L \
        --embeddings out/e5-small-2L/openvino/query_embeddings.pt --tasks scifact msmarco-sub5k \
        --data_dir ../shared/data/beir --output_dir out/e5-small-2L/openvino

Writes `eval_results_<name>.json` for each encoder in the file, in the form of `recipes/evaluate.py --query_encoder`.
"""

import argparse
import json
from pathlib import Path

import torch

from hfdistill import load_student
from hfdistill.embedding_cache import DEFAULT_CACHE_DIR
from hfdistill.evaluation import evaluate_student, format_report
from hfdistill.retrieval_tasks import resolve_task
from hfdistill.run_files import EXPORTED_EVAL_RESULTS


class PrecomputedQueryEncoder:
    """`encode_queries` that looks each query up among embeddings computed elsewhere; a query not there is an error."""

    def __init__(self, texts: list[str], embeddings: torch.Tensor, backend: str):
        self.rows = {text: row for row, text in enumerate(texts)}
        self.embeddings = embeddings.float()
        self.backend = backend
        self.config = {"backend": backend, "embedding_dim": embeddings.shape[1]}

    def encode_queries(self, queries: list[str], batch_size: int = 32, show_progress_bar: bool = False):
        missing = [query for query in queries if query not in self.rows]
        if missing:
            raise ValueError(f"{len(missing)} queries have no precomputed embedding, e.g. {missing[0]!r}.")
        return self.embeddings[[self.rows[query] for query in queries]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="The student whose teacher indexes the documents.")
    parser.add_argument(
        "--embeddings", required=True, help="torch file of {'texts': [...], 'embeddings': {name: (n, d)}}."
    )
    parser.add_argument("--tasks", nargs="+", default=["scifact", "msmarco-sub5k"])
    parser.add_argument("--data_dir")
    parser.add_argument("--cache_dir", default=DEFAULT_CACHE_DIR)
    parser.add_argument("--output_dir", required=True)
    args = parser.parse_args()
    tasks = [resolve_task(name, args.data_dir) for name in args.tasks]
    model = load_student(args.model)
    stored = torch.load(args.embeddings, weights_only=True)
    for name, embeddings in stored["embeddings"].items():
        encoder = PrecomputedQueryEncoder(stored["texts"], embeddings, name)
        report = evaluate_student(model, args.model, tasks, args.cache_dir, query_encoder=encoder)
        report["query_encoder"] = {"path": args.embeddings, **encoder.config}
        print(name)
        print(format_report(report))
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(args.output_dir) / EXPORTED_EVAL_RESULTS.format(name)).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
