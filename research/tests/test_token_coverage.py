from hfdistill.retrieval_tasks import read_beir_folder
from hfdistill.training_args import QueryDataArguments
from research.token_coverage import CoverageArguments, main
from tests.test_evaluation import write_beir


def test_coverage_counts_the_evaluation_tokens_the_training_queries_show(tiny_teacher, tmp_path):
    beir = write_beir(tmp_path / "tinybeir")
    texts = list(read_beir_folder(beir)["queries"].values())
    coverage = {}
    for repeats in (1, 6):  # each evaluation query `repeats` times (distinct texts, so deduplication keeps them)
        lines = [f"{text}{' .' * r}" for text in texts for r in range(repeats)]
        (tmp_path / "q.tsv").write_text("".join(f"{i}\t{line}\n" for i, line in enumerate(lines)))
        report = main(
            CoverageArguments(tokenizer=tiny_teacher, tasks=["tinybeir"], data_dir=str(tmp_path)),
            QueryDataArguments(train_queries=str(tmp_path / "q.tsv"), num_eval_queries=1),
        )
        coverage[repeats] = report["coverage"]["tinybeir"]
    assert coverage[6]["seen_1"] == coverage[6]["seen_5"] == 1.0  # one held-out copy leaves 5 of each query
    assert coverage[1]["seen_5"] < coverage[1]["seen_1"]  # some token occurs in fewer than 5 of the queries
