import json

from tests.conftest import run_script


def test_every_method_is_timed_on_the_same_queries(tiny_teacher, queries, tmp_path):
    (tmp_path / "q.tsv").write_text("".join(f"{i}\t{q}\n" for i, q in enumerate(queries)))
    run_script(["-m", "research.training_speed", "--teacher", tiny_teacher, "--student_layers", "0", "3",
                "--train_queries", str(tmp_path / "q.tsv"), "--num_eval_queries", "10", "--steps", "2",
                "--repeats", "1", "--batch_size", "8", "--embedding_cache_dir", str(tmp_path / "cache"),
                "--output_file", str(tmp_path / "speed.json")])  # fmt: skip
    results = json.loads((tmp_path / "speed.json").read_text())
    assert len(results["queries_per_second"]) == 4 and all(q > 0 for q in results["queries_per_second"].values())
    assert all(len(seconds) == 1 for seconds in results["seconds"].values())
