import json

from research.language_table import TableArguments, main, retention_row


def _report(retentions: dict[str, float]) -> dict:
    return {"tasks": {name: {"retention": value} for name, value in retentions.items()}}


def test_rows_summarise_the_development_sets_and_every_xquad_language(tmp_path):
    xquad = {f"xquad-{code}": value for code, value in zip(["en", "de", "es", "zh", "hi", "ar"],
                                                         [0.96, 0.9, 0.92, 0.88, 0.7, 0.74])}  # fmt: skip
    row = retention_row(_report({"scifact": 0.8, "msmarco-sub5k": 0.9, **xquad}))
    assert abs(row["dev"] - 0.85) < 1e-9 and abs(row["xquad"] - 0.85) < 1e-9 and row["xquad min"] == 0.7
    assert "dev" not in retention_row(_report({"scifact": 0.8}))  # a summary needs all of its tasks
    for name, report in (("a", _report({"scifact": 0.8, "msmarco-sub5k": 0.9, **xquad})),
                         ("b", _report({"scifact": 0.5, "msmarco-sub5k": 0.7}))):  # fmt: skip
        (tmp_path / name).mkdir()
        (tmp_path / name / "eval_results.json").write_text(json.dumps(report))
    text = main(TableArguments(runs=[f"query-only={tmp_path / 'a'}", f"peer={tmp_path / 'b'}"],
                               output=str(tmp_path / "t.md")))  # fmt: skip
    lines = text.splitlines()
    assert lines[0].startswith("| student | scifact | msmarco-sub5k | xquad-en |") and lines[0].endswith(
        "| dev | xquad | xquad min |"
    )
    assert lines[2] == ("| query-only | 80.0% | 90.0% | 96.0% | 90.0% | 92.0% | 88.0% | 70.0% | 74.0% | 85.0% | "
                        "85.0% | 70.0% |")  # fmt: skip
    assert lines[3] == "| peer | 50.0% | 70.0% | – | – | – | – | – | – | 60.0% | – | – |"
    assert (tmp_path / "t.md").read_text() == text
