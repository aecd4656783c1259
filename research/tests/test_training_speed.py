import json

from tests.conftest import run_script


def test_every_method_is_timed_on_the_same_texts_documents_included(tiny_teacher, queries, tmp_path):
    (tmp_path / "q.tsv").write_text("".join(f"{i}\t{q}\n" for i, q in enumerate(queries)))
    corpus = [{"_id": f"d{i}", "title": "", "text": f"{q}. {q} again, and more words."} for i, q in enumerate(queries)]
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps(document) + "\n" for document in corpus))
    run_script(["-m", "research.training_speed", "--teacher", tiny_teacher, "--student_layers", "0", "3",
                "--train_queries", str(tmp_path / "q.tsv"), "--num_eval_queries", "10", "--steps", "2",
                "--repeats", "1", "--batch_size", "8", "--embedding_cache_dir", str(tmp_path / "cache"),
                "--train_documents", str(tmp_path / "corpus.jsonl"), "--document_fraction", "1.0",
                "--output_file", str(tmp_path / "speed.json")])  # fmt: skip
    results = json.loads((tmp_path / "speed.json").read_text())
    assert len(results["texts_per_second"]) == 4 and all(rate > 0 for rate in results["texts_per_second"].values())
    assert all(len(seconds) == 1 for seconds in results["seconds"].values())
    assert results["num_timed_texts"] == 16 and 0 < results["num_timed_document_texts"] < 16  # both kinds, mixed
