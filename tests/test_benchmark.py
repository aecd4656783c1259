import json

import pytest

from hfdistill.benchmark import format_speed, measure_speed, speedups
from tests.conftest import run_script


def test_speedups_are_student_over_teacher():
    throughput = {"1": {"teacher": 10.0, "student": 40.0}, "32": {"teacher": 100.0, "student": 550.0}}
    latency = {"teacher": {"p50_ms": 12.0, "p99_ms": 30.0}, "student": {"p50_ms": 3.0, "p99_ms": 10.0}}
    assert speedups(throughput, latency) == {
        "throughput": {"1": 4.0, "32": 5.5},
        "latency_p50": 4.0,
        "latency_p99": 3.0,
    }


def test_measure_speed_schema(tiny_student, queries):
    results = measure_speed(tiny_student, queries, batch_sizes=(1, 8), repeats=2, num_threads=1, latency_queries=10)
    assert results["threads"] == 1 and results["student_layers"] == [0, 3] and results["repeats"] == 2
    assert set(results["throughput_qps"]) == {"1", "8"} and results["environment"]["packages"]["torch"]
    for batch_size, row in results["throughput_qps"].items():
        assert row["teacher"] > 0 and row["student"] > 0
        assert results["speedup"]["throughput"][batch_size] == pytest.approx(row["student"] / row["teacher"])
    latency = results["latency_batch1"]
    assert latency["student"]["p50_ms"] <= latency["student"]["p99_ms"]
    assert results["speedup"]["latency_p50"] == pytest.approx(
        latency["teacher"]["p50_ms"] / latency["student"]["p50_ms"]
    )
    with pytest.raises(ValueError, match="No queries"):
        measure_speed(tiny_student, [])


def test_speedups_of_other_backends_against_both_teachers():
    throughput = {"32": {"teacher": 100.0, "student": 300.0, "teacher (onnx-int8)": 250.0,
                         "student (onnx-int8)": 750.0}}  # fmt: skip
    latency = {name: {"p50_ms": 60.0 / qps, "p99_ms": 90.0 / qps} for name, qps in throughput["32"].items()}
    ratios = speedups(throughput, latency)["backends"]["onnx-int8"]
    assert ratios["vs_torch_teacher"] == {"32": 7.5} and ratios["vs_same_backend_teacher"] == {"32": 3.0}
    assert ratios["latency_p50_vs_torch_teacher"] == pytest.approx(7.5)


def test_every_backend_measured_in_one_run(tiny_student, queries):
    results = measure_speed(tiny_student, queries, batch_sizes=(1, 8), repeats=1, num_threads=1, latency_queries=5,
                            backends=("torch", "onnx", "onnx-int8"))  # fmt: skip
    names = {"teacher", "student", "teacher (onnx)", "student (onnx)", "teacher (onnx-int8)", "student (onnx-int8)"}
    assert set(results["throughput_qps"]["8"]) == set(results["latency_batch1"]) == names
    assert set(results["speedup"]["backends"]) == {"onnx", "onnx-int8"}
    assert "onnx-int8: student q/s, x the torch teacher, x the onnx-int8 teacher" in format_speed(results)
    with pytest.raises(ValueError, match=r"backends must include 'torch' .* got \('onnx', 'tflite'\)"):
        measure_speed(tiny_student, queries, backends=("onnx", "tflite"))


def test_other_query_encoders_are_timed_beside_the_teacher(tiny_student, queries):
    other = {"baseline": tiny_student.encode_teacher_queries}
    results = measure_speed(tiny_student, queries, batch_sizes=(8,), repeats=1, num_threads=1, latency_queries=5,
                            other_encoders=other)  # fmt: skip
    row, ratios = results["throughput_qps"]["8"], results["speedup"]["others"]["baseline"]
    assert ratios["vs_torch_teacher"]["8"] == pytest.approx(row["baseline"] / row["teacher"])
    assert "baseline: q/s, x the torch teacher" in format_speed(results) and "backends" not in results["speedup"]
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
    saved = json.loads((tmp_path / "out" / "speed_results.json").read_text())
    assert saved["model"] == str(tmp_path / "student") and set(saved["throughput_qps"]) == {"1", "4"}
