import json

import pytest

from hfdistill.benchmark import EncoderSpeed, SpeedResults, format_speed, measure_speed
from tests.conftest import run_script


def timing(name, side, backend, qps: dict, p50: float) -> EncoderSpeed:
    return EncoderSpeed(name, side, backend, qps, p50, 2 * p50)


def results_of(*encoders: EncoderSpeed) -> SpeedResults:
    return SpeedResults("t", [0, 3], "cpu", 2, 100, 3, list(encoders))


def test_speedups_are_over_the_teacher_of_a_backend():
    results = results_of(
        timing("teacher", "teacher", "torch", {"1": 10.0, "32": 100.0}, 12.0),
        timing("student", "student", "torch", {"1": 40.0, "32": 550.0}, 3.0),
        timing("teacher", "teacher", "onnx-int8", {"1": 20.0, "32": 250.0}, 6.0),
        timing("student", "student", "onnx-int8", {"1": 80.0, "32": 750.0}, 1.5),
        timing("baseline", None, "other", {"1": 90.0, "32": 900.0}, 1.0),
    )
    student, exported = results.encoder("student"), results.encoder("student", "onnx-int8")
    assert results.speedup(student, "1") == 4.0 and results.speedup(student, "32") == 5.5
    assert results.latency_speedup(student) == 4.0
    assert results.speedup(exported, "32") == 7.5 and results.speedup(exported, "32", "onnx-int8") == 3.0
    assert results.backends == ["torch", "onnx-int8"] and [e.name for e in results.others] == ["baseline"]
    assert SpeedResults.from_dict(json.loads(json.dumps(results.to_dict()))) == results  # the JSON round trip
    table = format_speed(results)
    assert "onnx-int8: student q/s, x the torch teacher, x the onnx-int8 teacher" in table
    assert "baseline: q/s, x the torch teacher" in table and "9.00x" in table


def test_measure_speed_times_each_encoder(tiny_student, queries):
    results = measure_speed(tiny_student, queries, batch_sizes=(1, 8), repeats=2, num_threads=1, latency_queries=10)
    assert results.threads == 1 and results.student_layers == [0, 3] and results.repeats == 2
    assert results.batch_sizes == ["1", "8"] and results.environment["packages"]["torch"]
    teacher, student = results.encoder("teacher"), results.encoder("student")
    assert all(qps > 0 for encoder in (teacher, student) for qps in encoder.throughput_qps.values())
    assert 0 < student.latency_p50_ms <= student.latency_p99_ms
    with pytest.raises(ValueError, match="No queries"):
        measure_speed(tiny_student, [])


def test_every_backend_measured_in_one_run(tiny_student, queries):
    results = measure_speed(tiny_student, queries, batch_sizes=(1, 8), repeats=1, num_threads=1, latency_queries=5,
                            backends=("torch", "onnx", "onnx-int8"))  # fmt: skip
    assert {(e.side, e.backend) for e in results.encoders} == {
        (side, backend) for side in ("teacher", "student") for backend in ("torch", "onnx", "onnx-int8")
    }
    assert results.backends == ["torch", "onnx", "onnx-int8"]
    with pytest.raises(ValueError, match=r"backends must include 'torch' .* got \('onnx', 'tflite'\)"):
        measure_speed(tiny_student, queries, backends=("onnx", "tflite"))


def test_other_query_encoders_are_timed_beside_the_teacher(tiny_student, queries):
    other = {"baseline": tiny_student.encode_teacher_queries}
    results = measure_speed(tiny_student, queries, batch_sizes=(8,), repeats=1, num_threads=1, latency_queries=5,
                            other_encoders=other)  # fmt: skip
    (baseline,) = results.others
    assert baseline.name == "baseline" and baseline.backend == "other" and baseline.throughput_qps["8"] > 0
    with pytest.raises(ValueError, match=r"Other query encoders cannot be named \['student'\]"):
        measure_speed(tiny_student, queries, other_encoders={"student": tiny_student.encode_queries})


def test_benchmark_recipe_writes_json(tiny_student, queries, tmp_path):
    tiny_student.save_pretrained(tmp_path / "student")
    (tmp_path / "q.tsv").write_text("".join(f"{i}\t{q}\n" for i, q in enumerate(queries)))
    result = run_script(
        [
            "recipes/benchmark.py",
            "--model",
            str(tmp_path / "student"),
            "--queries",
            str(tmp_path / "q.tsv"),
            "--batch_sizes",
            "1",
            "4",
            "--repeats",
            "1",
            "--threads",
            "1",
            "--output_dir",
            str(tmp_path / "out"),
        ]
    )
    assert "speed-up" in result.stdout
    saved = SpeedResults.from_dict(json.loads((tmp_path / "out" / "speed_results.json").read_text()))
    assert saved.model == str(tmp_path / "student") and saved.batch_sizes == ["1", "4"]
