"""Query-encoding speed of a student against its teacher, measured side by side on the same queries."""

import statistics
import time

import torch
from transformers import AutoConfig, AutoTokenizer
from transformers.utils.logging import tqdm

from .configuration_asymmetric import AsymmetricDualEncoderConfig, default_head
from .modeling_asymmetric import AsymmetricDualEncoder

ENCODERS = ("teacher", "student")


def _encode_fn(model: AsymmetricDualEncoder, encoder: str):
    return model.encode_queries if encoder == "student" else model.encode_teacher_queries


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


def speedups(throughput: dict, latency: dict) -> dict:
    """Student/teacher ratios: throughput speed-up per batch size, and how many times lower the latency is."""
    return {
        "throughput": {bs: r["student"] / r["teacher"] for bs, r in throughput.items()},
        "latency_p50": latency["teacher"]["p50_ms"] / latency["student"]["p50_ms"],
        "latency_p99": latency["teacher"]["p99_ms"] / latency["student"]["p99_ms"],
    }


def measure_speed(
    model: AsymmetricDualEncoder,
    queries: list[str],
    batch_sizes: tuple[int, ...] = (1, 8, 32, 128),
    repeats: int = 5,
    num_threads: int | None = None,
    latency_queries: int = 200,
) -> dict:
    """Queries/s per batch size (median of `repeats` timed passes after one warm-up pass) and batch-1 latency.

    Teacher and student alternate within each repeat, tokenization included, so machine noise hits both alike.
    """
    if not queries:
        raise ValueError("No queries to benchmark.")
    if num_threads:
        torch.set_num_threads(num_threads)
    model.eval()
    throughput = {}
    for batch_size in batch_sizes:
        texts = queries[: max(batch_size * 4, 256)] if batch_size > 1 else queries[:latency_queries]
        timings = {encoder: [] for encoder in ENCODERS}
        for repeat in tqdm(range(repeats + 1), desc=f"Throughput, batch {batch_size}"):
            for encoder in ENCODERS:
                start = time.perf_counter()
                _encode_fn(model, encoder)(texts, batch_size=batch_size)
                if repeat > 0:  # the first pass warms up
                    timings[encoder].append(len(texts) / (time.perf_counter() - start))
        throughput[str(batch_size)] = {encoder: statistics.median(timings[encoder]) for encoder in ENCODERS}
    latency = {}
    per_query = {encoder: [] for encoder in ENCODERS}
    for text in tqdm(queries[:latency_queries], desc="Latency, batch 1"):
        for encoder in ENCODERS:
            start = time.perf_counter()
            _encode_fn(model, encoder)([text], batch_size=1)
            per_query[encoder].append((time.perf_counter() - start) * 1000)
    for encoder, values in per_query.items():
        values.sort()
        latency[encoder] = {
            "p50_ms": statistics.median(values),
            "p99_ms": values[min(len(values) - 1, int(round(0.99 * (len(values) - 1))))],
        }
    return {
        "teacher": model.config.teacher_name_or_path,
        "student_layers": list(model.config.student_layers),
        "device": str(model.device),
        "threads": torch.get_num_threads(),
        "num_queries": len(queries),
        "repeats": repeats,
        "throughput_qps": throughput,
        "latency_batch1": latency,
        "speedup": speedups(throughput, latency),
    }


def format_speed(results: dict) -> str:
    """A terminal table of `measure_speed`'s results: queries/s per batch size, the ratios, batch-1 latency."""
    lines = [f"{'batch':>6}{'teacher q/s':>14}{'student q/s':>14}{'speed-up':>10}"]
    for batch_size, row in results["throughput_qps"].items():
        ratio = results["speedup"]["throughput"][batch_size]
        lines.append(f"{batch_size:>6}{row['teacher']:>14.1f}{row['student']:>14.1f}{ratio:>9.2f}x")
    latency = results["latency_batch1"]
    lines.append(
        f"batch-1 latency p50: teacher {latency['teacher']['p50_ms']:.2f} ms, student "
        f"{latency['student']['p50_ms']:.2f} ms ({results['speedup']['latency_p50']:.2f}x lower)"
    )
    return "\n".join(lines)
