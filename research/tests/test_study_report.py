"""research/study_report.py: rows, speed-ups matched by depth, proxy rank correlation, table and plot."""

import json

import pytest

from hfdistill.benchmark import SpeedResults
from tests.conftest import run_in_process


def write_run(folder, layers, retentions, proxy=None):
    folder.mkdir(parents=True)
    tasks = {task: {"retention": value} for task, value in retentions.items()}
    mean = sum(retentions.values()) / len(retentions)
    (folder / "eval_results.json").write_text(
        json.dumps({"student_layers": layers, "tasks": tasks, "mean_retention": mean})
    )
    if proxy is not None:  # a distilled student; an untrained one has no training record
        (folder / "distillation.json").write_text(json.dumps({"untrained_mean_cosine": proxy, "mean_cosine": 0.9}))


def write_speed(path, layers, b1, b32):
    def encoder(side, qps):
        return {"name": side, "side": side, "backend": "torch", "throughput_qps": qps, "latency_p50_ms": 1.0,
                "latency_p99_ms": 1.0}  # fmt: skip

    speed = SpeedResults("t", layers, "cpu", 2, 10, 1, [])
    speed = {
        **speed.to_dict(),
        "encoders": [encoder("teacher", {"1": 1.0, "32": 1.0}), encoder("student", {"1": b1, "32": b32})],
    }
    path.write_text(json.dumps(speed))


def test_report_table_correlation_and_plot(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs / "a", [0, 5], {"scifact": 0.90, "msmarco": 0.98}, proxy=0.52)
    write_run(runs / "b", [4, 5], {"scifact": 0.88, "msmarco": 0.96}, proxy=0.53)
    write_run(runs / "c", [2, 3], {"scifact": 0.70, "msmarco": 0.90}, proxy=0.30)
    write_run(runs / "d", [5], {"scifact": 0.80, "msmarco": 0.94}, proxy=0.40)
    write_run(runs / "e", [0, 5], {"scifact": 0.50, "msmarco": 0.90})
    write_speed(tmp_path / "s2.json", [0, 5], 2.5, 2.8)
    write_speed(tmp_path / "s1.json", [5], 4.0, 4.5)
    out = tmp_path / "report"
    result = run_in_process(["-m", "research.study_report", "--runs", *(str(runs / n) for n in "abcde"),
                             "--speed", str(tmp_path / "s2.json"), str(tmp_path / "s1.json"),
                             "--output_dir", str(out)])  # fmt: skip
    table = (out / "study_table.md").read_text().splitlines()
    assert table[2].startswith("| d | [5] | 80.0% | 94.0% | **87.0%** | 0.4000 | 0.9000 | 4.00x | 4.50x |")
    assert [line.split(" | ")[0] for line in table[3:]] == ["| a", "| b", "| c", "| e"]  # 2 layers, best first
    assert table[6] == "| e | [0, 5] | 50.0% | 90.0% | **70.0%** | – | – | 2.50x | 2.80x |"  # untrained: no proxy
    assert "| 2.50x | 2.80x |" in table[3]
    report = json.loads((out / "study_results.json").read_text())
    # 2-layer ranks: proxy b > a > c, retention a > b > c -> rho = 0.5; all four: 1 - 6*(1+1)/(4*15) = 0.8
    assert report["proxy_spearman"]["2 layers (3 students)"] == pytest.approx(0.5)
    assert report["proxy_spearman"]["all (4 students)"] == pytest.approx(0.8)
    assert (out / "retention_vs_speedup.png").read_bytes()[:4] == b"\x89PNG"
    assert "Spearman(proxy, mean retention), all (4 students): 0.800" in result.stdout


def test_report_names_a_run_without_results(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_in_process(["-m", "research.study_report", "--runs", str(tmp_path / "empty")], check=False)
    assert result.returncode != 0 and "eval_results.json is missing" in result.stderr
