"""Query-encoding speed of a student against its teacher, measured side by side on the same queries."""

import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers.utils.logging import tqdm

from .modeling_asymmetric import AsymmetricDualEncoder
from .persistence import SIDES
from .provenance import environment

BACKENDS = ("torch", "onnx", "onnx-int8")  # how a query encoder runs: PyTorch fp32, ONNX Runtime fp32 or int8 weights


def encoder_name(side: str, backend: str) -> str:
    """`teacher` / `student` for torch (the keys speed results always had), `student (onnx-int8)` for the others."""
    return side if backend == "torch" else f"{side} ({backend})"


def query_encoders(model: AsymmetricDualEncoder, backends: tuple[str, ...], workdir: str, num_threads: int | None):
    """{encoder name: encode function} for teacher and student under each backend; ONNX ones are exported to
    `workdir` first (fp32, or int8 for `onnx-int8`)."""
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown or "torch" not in backends:
        raise ValueError(f"backends must include 'torch' (the reference) and come from {BACKENDS}, got {backends}.")
    encoders = {"teacher": model.encode_teacher_queries, "student": model.encode_queries}
    exported = [backend for backend in backends if backend != "torch"]
    if not exported:
        return encoders
    from .export import ONNX_FILES, OnnxQueryEncoder, check_export, export_query_encoder

    quantize = "int8" if "onnx-int8" in exported else None
    check_export("onnx", quantize)
    folders = {
        side: export_query_encoder(model, Path(workdir, side), "onnx", quantize, side).parents[1] for side in SIDES
    }
    for backend in exported:  # one export per side: its fp32 graph and, if asked, the int8 one
        file_name = f"onnx/{ONNX_FILES['int8' if backend == 'onnx-int8' else None]}"
        for side, folder in folders.items():
            encoder = OnnxQueryEncoder(folder, file_name, num_threads)
            encoders[encoder_name(side, backend)] = encoder.encode_queries
    return encoders


def speedups(throughput: dict, latency: dict) -> dict:
    """Student/teacher ratios: throughput speed-up per batch size, and how many times lower the latency is. With
    other backends, `backends[b]` gives each backend's student against the torch teacher and against the teacher run
    by the same backend; `others[name]` gives each other query encoder against the torch teacher."""
    ratios = {
        "throughput": {bs: r["student"] / r["teacher"] for bs, r in throughput.items()},
        "latency_p50": latency["teacher"]["p50_ms"] / latency["student"]["p50_ms"],
        "latency_p99": latency["teacher"]["p99_ms"] / latency["student"]["p99_ms"],
    }
    for name in sorted(latency.keys() - {"teacher", "student"} - {n for n in latency if n.endswith(")")}):  # others
        ratios.setdefault("others", {})[name] = {
            "vs_torch_teacher": {bs: r[name] / r["teacher"] for bs, r in throughput.items()},
            "latency_p50_vs_torch_teacher": latency["teacher"]["p50_ms"] / latency[name]["p50_ms"],
        }
    for backend in sorted({name.split(" (")[1][:-1] for name in latency if name.endswith(")")}):
        student, teacher = encoder_name("student", backend), encoder_name("teacher", backend)
        ratios.setdefault("backends", {})[backend] = {
            "vs_torch_teacher": {bs: r[student] / r["teacher"] for bs, r in throughput.items()},
            "vs_same_backend_teacher": {bs: r[student] / r[teacher] for bs, r in throughput.items()},
            "latency_p50_vs_torch_teacher": latency["teacher"]["p50_ms"] / latency[student]["p50_ms"],
        }
    return ratios


def measure_speed(
    model: AsymmetricDualEncoder,
    queries: list[str],
    batch_sizes: tuple[int, ...] = (1, 8, 32, 128),
    repeats: int = 5,
    num_threads: int | None = None,
    latency_queries: int = 200,
    backends: tuple[str, ...] = ("torch",),
    other_encoders: dict | None = None,
) -> dict:
    """Queries/s per batch size (median of `repeats` timed passes after one warm-up pass) and batch-1 latency, for the
    teacher and the student under each of `backends` (`torch`, `onnx`, `onnx-int8`), and for `other_encoders`
    ({name: `encode_queries`}, e.g. a baseline's: `query_encoders.load_query_encoder`).

    All encoders alternate within each repeat, tokenization included, so machine noise hits them alike.
    """
    if not queries:
        raise ValueError("No queries to benchmark.")
    if num_threads:
        torch.set_num_threads(num_threads)
    model.eval()
    with tempfile.TemporaryDirectory() as workdir:
        encoders = query_encoders(model, tuple(backends), workdir, num_threads)
        if clash := set(encoders) & set(other_encoders or {}):
            raise ValueError(f"Other query encoders cannot be named {sorted(clash)}: the teacher and student are.")
        encoders.update(other_encoders or {})
        throughput = {}
        for batch_size in batch_sizes:
            texts = queries[: max(batch_size * 4, 256)] if batch_size > 1 else queries[:latency_queries]
            timings = {name: [] for name in encoders}
            for repeat in tqdm(range(repeats + 1), desc=f"Throughput, batch {batch_size}"):
                for name, encode in encoders.items():
                    start = time.perf_counter()
                    encode(texts, batch_size=batch_size)
                    if repeat > 0:  # the first pass warms up
                        timings[name].append(len(texts) / (time.perf_counter() - start))
            throughput[str(batch_size)] = {name: statistics.median(timings[name]) for name in encoders}
        per_query = {name: [] for name in encoders}
        for text in tqdm(queries[:latency_queries], desc="Latency, batch 1"):
            for name, encode in encoders.items():
                start = time.perf_counter()
                encode([text], batch_size=1)
                per_query[name].append((time.perf_counter() - start) * 1000)
    latency = {}
    for name, values in per_query.items():
        values.sort()
        latency[name] = {
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
        "backends": list(backends),
        "throughput_qps": throughput,
        "latency_batch1": latency,
        "speedup": speedups(throughput, latency),
        "environment": environment(),
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
    for backend, ratios in results["speedup"].get("backends", {}).items():
        student, teacher = encoder_name("student", backend), encoder_name("teacher", backend)
        lines.append(f"{backend}: student q/s, x the torch teacher, x the {backend} teacher")
        for batch_size, row in results["throughput_qps"].items():
            lines.append(
                f"{batch_size:>6}{row[student]:>14.1f}{ratios['vs_torch_teacher'][batch_size]:>9.2f}x"
                f"{ratios['vs_same_backend_teacher'][batch_size]:>9.2f}x   ({backend} teacher {row[teacher]:.1f} q/s)"
            )
        lines.append(f"  batch-1 latency p50 {latency[student]['p50_ms']:.2f} ms")
    for name, ratios in results["speedup"].get("others", {}).items():
        lines.append(f"{name}: q/s, x the torch teacher")
        for batch_size, row in results["throughput_qps"].items():
            lines.append(f"{batch_size:>6}{row[name]:>14.1f}{ratios['vs_torch_teacher'][batch_size]:>9.2f}x")
        lines.append(f"  batch-1 latency p50 {latency[name]['p50_ms']:.2f} ms")
    return "\n".join(lines)
