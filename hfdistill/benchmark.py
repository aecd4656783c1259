"""Query-encoding speed of a student against its teacher, measured side by side on the same queries."""

import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers.utils.logging import tqdm

from .export import SERVING_BACKENDS
from .modeling_asymmetric import AsymmetricDualEncoder
from .persistence import SIDES
from .provenance import environment

BACKENDS = ("torch", *SERVING_BACKENDS)  # how a query encoder runs: PyTorch fp32, or an exported one


@dataclass
class EncoderSpeed:
    """
    One query encoder's speed in a benchmark.

    Args:
        name (`str`): the student's or the teacher's side, or another encoder's name (a baseline).
        side (`str`, *optional*): `student` or `teacher` for the model's own encoders; `None` for another.
        backend (`str`): what runs it: `torch`, `onnx`, `onnx-int8`, or `other` for another encoder.
        throughput_qps (`dict[str, float]`): queries per second per batch size (median of the repeats).
        latency_p50_ms (`float`): median batch-1 latency.
        latency_p99_ms (`float`): 99th percentile batch-1 latency.
    """

    name: str
    side: str | None
    backend: str
    throughput_qps: dict[str, float]
    latency_p50_ms: float
    latency_p99_ms: float


@dataclass
class SpeedResults:
    """
    A benchmark of the teacher, the student and other encoders, side by side on the same queries
    (`speed_results.json`).

    Args:
        teacher (`str`): the teacher's name.
        student_layers (`list[int]`): the student's layers.
        device (`str`): where torch ran.
        threads (`int`): torch's threads.
        num_queries (`int`): queries available to time.
        repeats (`int`): timed passes per batch size.
        encoders (`list[EncoderSpeed]`): every encoder timed.
        environment (`dict`): packages, commit and time (`provenance.environment`).
        model (`str`, *optional*): the benchmarked student's path or Hub id.
    """

    teacher: str
    student_layers: list[int]
    device: str
    threads: int
    num_queries: int
    repeats: int
    encoders: list[EncoderSpeed]
    environment: dict = field(default_factory=dict)
    model: str | None = None

    @classmethod
    def from_dict(cls, record: dict) -> "SpeedResults":
        return cls(**{**record, "encoders": [EncoderSpeed(**encoder) for encoder in record["encoders"]]})

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def batch_sizes(self) -> list[str]:
        return list(self.encoders[0].throughput_qps)

    @property
    def backends(self) -> list[str]:
        """The backends the student ran under, torch first."""
        return [encoder.backend for encoder in self.encoders if encoder.side == "student"]

    @property
    def others(self) -> list[EncoderSpeed]:
        """The encoders timed beside the model's own (baselines)."""
        return [encoder for encoder in self.encoders if encoder.side is None]

    def encoder(self, side: str, backend: str = "torch") -> EncoderSpeed:
        return next(e for e in self.encoders if e.side == side and e.backend == backend)

    def speedup(self, encoder: EncoderSpeed, batch_size: str, teacher_backend: str = "torch") -> float:
        """`encoder`'s throughput over the teacher's under `teacher_backend`, at `batch_size`."""
        return encoder.throughput_qps[batch_size] / self.encoder("teacher", teacher_backend).throughput_qps[batch_size]

    def latency_speedup(self, encoder: EncoderSpeed) -> float:
        """How many times lower `encoder`'s median batch-1 latency is than the torch teacher's."""
        return self.encoder("teacher").latency_p50_ms / encoder.latency_p50_ms


def backend_encoders(
    model: AsymmetricDualEncoder, backends: tuple[str, ...], workdir: str, num_threads: int | None
) -> dict[tuple[str, str], object]:
    """{(side, backend): encode function} for teacher and student under each backend; ONNX ones are exported to
    `workdir` first (fp32, or int8 for `onnx-int8`)."""
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown or "torch" not in backends:
        raise ValueError(f"backends must include 'torch' (the reference) and come from {BACKENDS}, got {backends}.")
    encoders = {("teacher", "torch"): model.encode_teacher_queries, ("student", "torch"): model.encode_queries}
    exported = [backend for backend in backends if backend != "torch"]
    if not exported:
        return encoders
    from .export import ONNX_FILES, OnnxQueryEncoder, check_export, export_query_encoder

    quantize = next((SERVING_BACKENDS[b] for b in exported if SERVING_BACKENDS[b]), None)
    check_export("onnx", quantize)
    folders = {
        side: export_query_encoder(model, Path(workdir, side), "onnx", quantize, side).parents[1] for side in SIDES
    }
    for backend in exported:  # one export per side: its fp32 graph and, if asked, the int8 one
        file_name = f"onnx/{ONNX_FILES[SERVING_BACKENDS[backend]]}"
        for side, folder in folders.items():
            encoders[side, backend] = OnnxQueryEncoder(folder, file_name, num_threads).encode_queries
    return encoders


def measure_speed(
    model: AsymmetricDualEncoder,
    queries: list[str],
    batch_sizes: tuple[int, ...] = (1, 8, 32, 128),
    repeats: int = 5,
    num_threads: int | None = None,
    latency_queries: int = 200,
    backends: tuple[str, ...] = ("torch",),
    other_encoders: dict | None = None,
) -> SpeedResults:
    """Queries/s per batch size (median of `repeats` timed passes after one warm-up pass) and batch-1 latency, for the
    teacher and the student under each of `backends` (`torch`, `onnx`, `onnx-int8`), and for `other_encoders`
    ({name: `encode_queries`}, e.g. a baseline's: `query_encoders.load_query_encoder`).

    All encoders alternate within each repeat, tokenization included, so machine noise hits them alike.
    """
    if not queries:
        raise ValueError("No queries to benchmark.")
    if clash := set(SIDES) & set(other_encoders or {}):
        raise ValueError(f"Other query encoders cannot be named {sorted(clash)}: the teacher and student are.")
    if num_threads:
        torch.set_num_threads(num_threads)
    model.eval()
    with tempfile.TemporaryDirectory() as workdir:
        encoders = backend_encoders(model, tuple(backends), workdir, num_threads)
        encoders.update({(name, "other"): encode for name, encode in (other_encoders or {}).items()})
        throughput = {key: {} for key in encoders}
        for batch_size in batch_sizes:
            texts = queries[: max(batch_size * 4, 256)] if batch_size > 1 else queries[:latency_queries]
            timings = {key: [] for key in encoders}
            for repeat in tqdm(range(repeats + 1), desc=f"Throughput, batch {batch_size}"):
                for key, encode in encoders.items():
                    start = time.perf_counter()
                    encode(texts, batch_size=batch_size)
                    if repeat > 0:  # the first pass warms up
                        timings[key].append(len(texts) / (time.perf_counter() - start))
            for key in encoders:
                throughput[key][str(batch_size)] = statistics.median(timings[key])
        per_query = {key: [] for key in encoders}
        for text in tqdm(queries[:latency_queries], desc="Latency, batch 1"):
            for key, encode in encoders.items():
                start = time.perf_counter()
                encode([text], batch_size=1)
                per_query[key].append((time.perf_counter() - start) * 1000)
    timed = []
    for (name, backend), values in per_query.items():
        values.sort()
        p99 = values[min(len(values) - 1, int(round(0.99 * (len(values) - 1))))]
        side = name if backend != "other" else None
        timed.append(EncoderSpeed(name, side, backend, throughput[name, backend], statistics.median(values), p99))
    return SpeedResults(
        teacher=model.config.teacher_name_or_path,
        student_layers=list(model.config.student_layers),
        device=str(model.device),
        threads=torch.get_num_threads(),
        num_queries=len(queries),
        repeats=repeats,
        encoders=timed,
        environment=environment(),
    )


def format_speed(results: SpeedResults) -> str:
    """A terminal table of `measure_speed`'s results: queries/s per batch size, the ratios, batch-1 latency."""
    teacher, student = results.encoder("teacher"), results.encoder("student")
    lines = [f"{'batch':>6}{'teacher q/s':>14}{'student q/s':>14}{'speed-up':>10}"]
    for batch_size in results.batch_sizes:
        qps = teacher.throughput_qps[batch_size], student.throughput_qps[batch_size]
        lines.append(f"{batch_size:>6}{qps[0]:>14.1f}{qps[1]:>14.1f}{results.speedup(student, batch_size):>9.2f}x")
    lines.append(
        f"batch-1 latency p50: teacher {teacher.latency_p50_ms:.2f} ms, student {student.latency_p50_ms:.2f} ms "
        f"({results.latency_speedup(student):.2f}x lower)"
    )
    for backend in results.backends[1:]:
        exported = results.encoder("student", backend)
        lines.append(f"{backend}: student q/s, x the torch teacher, x the {backend} teacher")
        for batch_size in results.batch_sizes:
            qps = exported.throughput_qps[batch_size]
            same = results.encoder("teacher", backend).throughput_qps[batch_size]
            lines.append(
                f"{batch_size:>6}{qps:>14.1f}{results.speedup(exported, batch_size):>9.2f}x"
                f"{results.speedup(exported, batch_size, backend):>9.2f}x   ({backend} teacher {same:.1f} q/s)"
            )
        lines.append(f"  batch-1 latency p50 {exported.latency_p50_ms:.2f} ms")
    for other in results.others:
        lines.append(f"{other.name}: q/s, x the torch teacher")
        for batch_size in results.batch_sizes:
            lines.append(
                f"{batch_size:>6}{other.throughput_qps[batch_size]:>14.1f}{results.speedup(other, batch_size):>9.2f}x"
            )
        lines.append(f"  batch-1 latency p50 {other.latency_p50_ms:.2f} ms")
    return "\n".join(lines)
