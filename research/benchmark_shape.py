"""Query speed of students of a large teacher, with random weights of its shape: with the teacher's query prompt and
prompt-free, each measured side by side with the teacher on the same queries.

python -m research.benchmark_shape --teacher_config research/configs/shapes/qwen3-embedding-0.6b.json \
    --tokenizer sentence-transformers/all-MiniLM-L6-v2 --student_layers 0 27 --pooling lasttoken --padding_side left \
    --query_prompt $'Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:' \
    --queries ../shared/data/msmarco/queries.dev.small.tsv.gz --batch_sizes 1 32 --repeats 3 --threads 2 \
    --output_dir out/qwen3-shape
"""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoConfig, AutoTokenizer

from hfdistill import AsymmetricDualEncoder, AsymmetricDualEncoderConfig
from hfdistill.benchmark import format_speed, measure_speed
from hfdistill.cli import parse_args
from hfdistill.configuration_asymmetric import default_head
from hfdistill.data import load_queries


def random_student(
    teacher_config: str,
    tokenizer: str,
    student_layers: list[int],
    pooling: str = "mean",
    query_prompt: str = "",
    padding_side: str = "right",
    max_length: int = 512,
) -> AsymmetricDualEncoder:
    """A student and teacher of a checkpoint's shape with random weights: speed does not depend on the weights, so a
    `config.json` and any tokenizer with a similar token count per query measure a teacher too large to download."""
    config = AutoConfig.from_pretrained(teacher_config)
    model = AsymmetricDualEncoder(
        AsymmetricDualEncoderConfig(
            teacher_config=config.to_dict(),
            teacher_name_or_path=f"{config.model_type} of the shape in {teacher_config}",
            student_layers=student_layers,
            head=default_head(pooling, config.hidden_size, normalize=True),
            query_prompt=query_prompt,
            max_length=max_length,
        )
    )
    model.tokenizer = AutoTokenizer.from_pretrained(tokenizer, padding_side=padding_side)
    return model


@dataclass
class ShapeArguments:
    teacher_config: str = field(metadata={"help": "config.json (or folder, Hub id) of the teacher's architecture."})
    tokenizer: str = field(metadata={"help": "Tokenizer (a stand-in with a similar token count per query will do)."})
    student_layers: list[int] = field(metadata={"help": "Teacher layers the student keeps, e.g. `0 27`."})
    queries: str = field(metadata={"help": "Query file (.tsv/.jsonl/.txt[.gz]), e.g. MS MARCO dev queries."})
    pooling: str = field(default="mean", metadata={"help": "The teacher's pooling (e.g. lasttoken for decoders)."})
    padding_side: str = field(default="right", metadata={"help": "left for decoder embedders."})
    query_prompt: str = field(default="", metadata={"help": "The teacher's query prompt."})
    threads: int | None = field(default=None, metadata={"help": "torch threads (default: torch's choice)."})
    batch_sizes: list[int] = field(default_factory=lambda: [1, 32], metadata={"help": "Batch sizes."})
    repeats: int = field(default=3, metadata={"help": "Timed passes per batch size (median reported)."})
    latency_queries: int = field(default=50, metadata={"help": "Queries timed one by one for batch-1 latency."})
    output_dir: str = field(default="out/shape-benchmark", metadata={"help": "Where shape_speed_results.json goes."})


def main(args: ShapeArguments) -> dict:
    model = random_student(
        args.teacher_config, args.tokenizer, args.student_layers, args.pooling, args.query_prompt, args.padding_side
    )
    queries = load_queries(args.queries)
    results = {}
    for name, student_prompt in (("prompted", None), ("prompt_free", "")):
        model.config.student_query_prompt = student_prompt
        tokens = [len(ids) for ids in model.tokenize_queries(queries[:1000])["input_ids"]]
        run = measure_speed(model, queries, tuple(args.batch_sizes), args.repeats, args.threads, args.latency_queries)
        results[name] = {**run.to_dict(), "mean_student_tokens": sum(tokens) / len(tokens)}
        print(f"{name} student {args.student_layers}, {results[name]['mean_student_tokens']:.1f} tokens per query:")
        print(format_speed(run))
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(args.output_dir) / "shape_speed_results.json").write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.INFO)
    main(*parse_args((ShapeArguments,)))
