import json
import math
import random
from pathlib import Path

import pytest
import torch

from hfdistill import from_teacher, load_student
from hfdistill.evaluation import AsymmetricEncoder, evaluate_student, teacher_scores
from hfdistill.retrieval_tasks import LocalBeirRetrieval, read_beir_folder, resolve_task
from tests.conftest import E5_PROMPTS, WORDS, run_in_process, write_st_teacher


def write_beir(folder: Path, num_docs: int = 60, num_queries: int = 12, seed: int = 0) -> Path:
    rng = random.Random(seed)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    docs = {f"d{i}": " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 15))) for i in range(num_docs)}
    with open(folder / "corpus.jsonl", "w") as f:
        for doc_id, text in docs.items():
            f.write(json.dumps({"_id": doc_id, "title": "", "text": text}) + "\n")
    qrels = {}
    with open(folder / "queries.jsonl", "w") as f:
        for i in range(num_queries):
            relevant = rng.sample(sorted(docs), 2)
            qrels[f"q{i}"] = relevant
            words = docs[relevant[0]].split()[:4]
            f.write(json.dumps({"_id": f"q{i}", "text": " ".join(words)}) + "\n")
    with open(folder / "qrels" / "test.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, relevant in qrels.items():
            f.write("".join(f"{qid}\t{d}\t1\n" for d in relevant))
    return folder


def hand_ndcg_at_10(query_embeddings, doc_embeddings, query_ids, doc_ids, qrels) -> float:
    """nDCG@10 with binary gains, computed from scratch."""
    scores = query_embeddings @ doc_embeddings.T
    total = 0.0
    for row, qid in enumerate(query_ids):
        ranking = [doc_ids[j] for j in scores[row].argsort(descending=True)[:10].tolist()]
        dcg = sum(qrels[qid].get(d, 0) / math.log2(rank + 2) for rank, d in enumerate(ranking))
        ideal = sorted(qrels[qid].values(), reverse=True)[:10]
        total += dcg / sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
    return total / len(query_ids)


@pytest.fixture
def beir(tmp_path) -> Path:
    return write_beir(tmp_path / "tinybeir")


def test_ndcg_matches_a_hand_computation(tiny_student, beir, tmp_path):
    report = evaluate_student(tiny_student, "tiny", [LocalBeirRetrieval.from_folder(beir)], tmp_path / "cache")
    data = read_beir_folder(beir)
    query_ids, doc_ids = list(data["queries"]), list(data["corpus"])
    docs = tiny_student.encode_documents([data["corpus"][d]["text"] for d in doc_ids])
    for side, queries in (
        ("student", tiny_student.encode_queries(list(data["queries"].values()))),
        ("teacher", tiny_student.encode_documents(list(data["queries"].values()))),
    ):
        expected = hand_ndcg_at_10(queries, docs, query_ids, doc_ids, data["qrels"])
        assert report["tasks"]["tinybeir"][side]["ndcg_at_10"] == pytest.approx(expected, abs=1e-4)
    assert report["environment"]["packages"]["mteb"]  # where the numbers came from
    task = report["tasks"]["tinybeir"]
    assert task["retention"] == pytest.approx(task["student"]["ndcg_at_10"] / task["teacher"]["ndcg_at_10"])
    assert report["mean_retention"] == pytest.approx(task["retention"])
    assert report["student_layers"] == [0, 3]
    assert task["languages"] == []  # a local folder's language is not known unless given


def test_a_tasks_languages_are_recorded_with_its_scores(tiny_student, beir, tmp_path):
    from hfdistill.retrieval_tasks import task_languages

    task = resolve_task("tinybeir", beir.parent, ["de"])
    assert task_languages(task) == ["de"] and task_languages(mteb_scifact := resolve_task("SciFact")) == ["eng"]
    report = evaluate_student(tiny_student, "tiny", [task], tmp_path / "cache")
    assert report["tasks"]["tinybeir"]["languages"] == ["de"] and mteb_scifact.metadata.name == "SciFact"


def test_documents_and_teacher_scores_are_cached(tiny_student, beir, tmp_path):
    cache = tmp_path / "cache"
    first = evaluate_student(tiny_student, "tiny", [LocalBeirRetrieval.from_folder(beir)], cache)
    assert len(list(cache.glob("teacher-scores-*.json"))) == 1
    documents = list(cache.glob("teacher-embeddings-*.safetensors"))
    assert len(documents) == 2  # the corpus, and the queries as the teacher embeds them
    # a second student of the same teacher: the teacher never runs again
    torch.manual_seed(0)
    with torch.no_grad():
        for p in tiny_student.query_encoder.encoder.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    tiny_student.document_encoder.forward = None
    second = evaluate_student(tiny_student, "tiny2", [LocalBeirRetrieval.from_folder(beir)], cache)
    assert second["tasks"]["tinybeir"]["teacher"] == first["tasks"]["tinybeir"]["teacher"]
    assert second["tasks"]["tinybeir"]["student"] != first["tasks"]["tinybeir"]["student"]


def test_changed_dataset_is_not_served_from_cache(tiny_student, tmp_path):
    cache = tmp_path / "cache"
    teacher_scores(tiny_student, LocalBeirRetrieval.from_folder(write_beir(tmp_path / "a", seed=0)), cache)
    folder = write_beir(tmp_path / "a", seed=1)
    teacher_scores(tiny_student, LocalBeirRetrieval.from_folder(folder), cache)
    assert len(list(cache.glob("teacher-scores-*.json"))) == 2
    corpus = (folder / "corpus.jsonl").read_text().replace('"text": "', '"text": "edited ', 1)  # same ids
    (folder / "corpus.jsonl").write_text(corpus)
    teacher_scores(tiny_student, LocalBeirRetrieval.from_folder(folder), cache)
    assert len(list(cache.glob("teacher-scores-*.json"))) == 3


def test_corrupt_teacher_scores_are_recomputed(tiny_student, beir, tmp_path):
    task = LocalBeirRetrieval.from_folder(beir)
    good = teacher_scores(tiny_student, task, tmp_path)
    (path,) = tmp_path.glob("teacher-scores-*.json")
    path.write_text("{not json")
    assert teacher_scores(tiny_student, task, tmp_path) == good


def test_encoder_routes_by_prompt_type(tiny_student, tmp_path):
    from mteb.types import PromptType

    texts = ["what is dense retrieval", "the cat"]
    encoder = AsymmetricEncoder(tiny_student, "tiny", cache_dir=tmp_path)
    as_query = encoder.encode(
        [{"text": texts}], task_metadata=None, hf_split="test", hf_subset="default", prompt_type=PromptType.query
    )
    as_document = encoder.encode(
        [{"text": texts}], task_metadata=None, hf_split="test", hf_subset="default", prompt_type=PromptType.document
    )
    torch.testing.assert_close(torch.from_numpy(as_query), tiny_student.encode_queries(texts))
    torch.testing.assert_close(torch.from_numpy(as_document), tiny_student.encode_documents(texts))


def test_prompts_in_mteb_equal_sentence_transformers_own_evaluation(beir, tmp_path):
    """With an e5-style prompted teacher, hfdistill's teacher score is mteb's score of the SentenceTransformer itself
    (which applies the query and document prompts), and differs from the score without prompts."""
    import mteb
    from mteb.types import PromptType
    from sentence_transformers import SentenceTransformer

    teacher = write_st_teacher(tmp_path / "e5", "bert", prompts=E5_PROMPTS)
    student = from_teacher(teacher, [0, 3])
    reference = SentenceTransformer(teacher, device="cpu")
    texts = ["what is dense retrieval", "the cat"]
    encoder = AsymmetricEncoder(student, "tiny", cache_dir=tmp_path / "cache")
    as_document = encoder.encode(
        [{"text": texts}], task_metadata=None, hf_split="test", hf_subset="default", prompt_type=PromptType.document
    )
    torch.testing.assert_close(
        torch.from_numpy(as_document), reference.encode_document(texts, convert_to_tensor=True), atol=1e-5, rtol=0
    )
    ours = teacher_scores(student, LocalBeirRetrieval.from_folder(beir), tmp_path / "cache")
    plain = mteb.evaluate(reference, LocalBeirRetrieval.from_folder(beir), cache=None)
    assert ours["ndcg_at_10"] == pytest.approx(plain.task_results[0].scores["test"][0]["ndcg_at_10"], abs=1e-6)
    student.config.query_prompt = student.config.document_prompt = ""
    unprompted = teacher_scores(student, LocalBeirRetrieval.from_folder(beir), tmp_path / "cache")
    assert unprompted["ndcg_at_10"] != pytest.approx(ours["ndcg_at_10"], abs=1e-6)


def test_mteb_scores_a_saved_student_loaded_as_a_sentence_transformer(beir, tmp_path):
    """The saved folder is a SentenceTransformer for mteb: its score is the student's in hfdistill's report."""
    import mteb
    from sentence_transformers import SentenceTransformer

    student = from_teacher(write_st_teacher(tmp_path / "e5", "bert", prompts=E5_PROMPTS), [0, 3])
    student.save_pretrained(tmp_path / "student")
    task = LocalBeirRetrieval.from_folder(beir)
    report = evaluate_student(student, "tiny", [task], tmp_path / "cache")
    direct = mteb.evaluate(SentenceTransformer(str(tmp_path / "student"), device="cpu"), task, cache=None)
    ndcg = direct.task_results[0].scores["test"][0]["ndcg_at_10"]
    assert ndcg == pytest.approx(report["tasks"]["tinybeir"]["student"]["ndcg_at_10"], abs=1e-6)


def test_bad_inputs(tiny_teacher, beir, tmp_path):
    with pytest.raises(ValueError, match="Unknown task 'nosuchtask'"):
        resolve_task("nosuchtask", tmp_path)
    (beir / "queries.jsonl").rename(tmp_path / "q.jsonl")
    with pytest.raises(FileNotFoundError, match=r"lacks \['queries.jsonl'\]"):
        read_beir_folder(beir)
    (tmp_path / "q.jsonl").rename(beir / "queries.jsonl")
    with open(beir / "qrels" / "test.tsv", "a") as f:
        f.write("q0\tmissing-doc\t1\n")
    with pytest.raises(ValueError, match="names unknown ids.*missing-doc"):
        read_beir_folder(beir)
    empty = write_beir(tmp_path / "empty")
    (empty / "corpus.jsonl").write_text("")
    with pytest.raises(ValueError, match="the corpus is empty"):
        read_beir_folder(empty)
    with pytest.raises(ValueError, match="is not an hfdistill student \\(model_type='bert'\\)"):
        load_student(tiny_teacher)


def test_evaluate_recipe_several_students(tiny_student, beir, tmp_path):
    for name in ("s1", "s2"):
        tiny_student.save_pretrained(tmp_path / name)
    out = tmp_path / "eval"
    result = run_in_process(
        [
            "recipes/evaluate.py",
            "--model",
            str(tmp_path / "s1"),
            str(tmp_path / "s2"),
            "--tasks",
            "tinybeir",
            "--data_dir",
            str(beir.parent),
            "--output_dir",
            str(out),
            "--cache_dir",
            str(tmp_path / "c"),
        ]
    )
    assert "mean retention" in result.stdout
    reports = sorted(out.glob("*/eval_results.json"))
    assert len(reports) == 2
    report = json.loads(reports[0].read_text())
    assert set(report) == {"teacher", "student", "student_layers", "tasks", "mean_retention", "environment"}
    assert set(report["tasks"]["tinybeir"]) >= {"teacher", "student", "retention"}
    assert set(report["tasks"]["tinybeir"]["student"]) == {"ndcg_at_10", "recall_at_100", "mrr_at_10"}


@pytest.mark.slow
def test_teacher_ndcg_equals_plain_mteb_on_real_scifact(minilm, tmp_path):
    """hfdistill's teacher score equals mteb's own evaluation of the teacher as a plain SentenceTransformer."""
    import gzip

    import mteb
    from sentence_transformers import SentenceTransformer

    from tests.conftest import SHARED

    source, subset = SHARED / "data" / "beir" / "scifact", tmp_path / "scifact-subset"
    (subset / "qrels").mkdir(parents=True)
    rows = (source / "qrels" / "test.tsv").read_text().splitlines()
    qrels = rows[1:][:40]
    wanted = {row.split("\t")[1] for row in qrels}
    with gzip.open(source / "corpus.jsonl.gz", "rt") as f:
        corpus = [json.loads(line) for line in f]
    keep = [d for d in corpus if d["_id"] in wanted] + random.Random(0).sample(corpus, 200)
    (subset / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in {d["_id"]: d for d in keep}.values()))
    qids = {row.split("\t")[0] for row in qrels}
    queries = [line for line in (source / "queries.jsonl").read_text().splitlines() if json.loads(line)["_id"] in qids]
    (subset / "queries.jsonl").write_text("\n".join(queries) + "\n")
    (subset / "qrels" / "test.tsv").write_text("\n".join(rows[:1] + qrels) + "\n")

    student = from_teacher(minilm, [0, 5])
    ours = teacher_scores(student, LocalBeirRetrieval.from_folder(subset), tmp_path / "cache")
    plain = mteb.evaluate(
        SentenceTransformer(minilm, device="cpu"), LocalBeirRetrieval.from_folder(subset), cache=None
    )
    assert ours["ndcg_at_10"] == pytest.approx(plain.task_results[0].scores["test"][0]["ndcg_at_10"], abs=1e-4)
    assert 0.3 < ours["ndcg_at_10"] <= 1.0


def test_evaluate_recipe_scores_an_exported_query_encoder(tiny_student, beir, tmp_path):
    from hfdistill.export import export_query_encoder

    tiny_student.save_pretrained(tmp_path / "student")
    export_query_encoder(tiny_student, tmp_path / "onnx")
    export_query_encoder(tiny_student, tmp_path / "int8", quantize="int8")
    common = ["--model", str(tmp_path / "student"), "--tasks", "tinybeir", "--data_dir", str(beir.parent),
              "--cache_dir", str(tmp_path / "c")]  # fmt: skip
    reports = {}
    results = {  # the student's sentence-transformers form stands for any sentence-transformers query encoder
        "torch": "eval_results.json",
        "onnx": "eval_results_onnx.json",
        "int8": "eval_results_onnx-int8.json",
        "student": "eval_results_sentence-transformers.json",
    }
    for name, results_file in results.items():
        exported = ["--query_encoder", str(tmp_path / name)] if name != "torch" else []
        run_in_process(["recipes/evaluate.py", *common, *exported, "--output_dir", str(tmp_path / f"eval-{name}")])
        reports[name] = json.loads((tmp_path / f"eval-{name}" / results_file).read_text())
    scores = {name: report["tasks"]["tinybeir"]["student"]["ndcg_at_10"] for name, report in reports.items()}
    assert scores["onnx"] == pytest.approx(scores["torch"], abs=1e-6)  # fp32 ONNX ranks as torch does
    assert scores["student"] == pytest.approx(scores["torch"], abs=1e-6)
    assert abs(scores["int8"] - scores["torch"]) < 0.2
    assert reports["int8"]["query_encoder"]["quantize"] == "int8" and "query_encoder" not in reports["torch"]
    assert reports["student"]["student"] == str(tmp_path / "student")  # named by its own path
    assert reports["student"]["student_layers"] is None and reports["int8"]["student_layers"] == [0, 3]
    teacher = {name: report["tasks"]["tinybeir"]["teacher"]["ndcg_at_10"] for name, report in reports.items()}
    assert len(set(teacher.values())) == 1  # documents stay the teacher's torch embeddings
    (tmp_path / "empty").mkdir()
    result = run_in_process(["recipes/evaluate.py", *common, "--query_encoder", str(tmp_path / "empty"),
                             "--output_dir", str(tmp_path / "bad")], check=False)  # fmt: skip
    assert result.returncode == 1 and "is neither an exported query encoder" in result.stderr


def test_a_query_encoder_of_another_dimension_is_refused_before_any_encoding(tiny_student, beir, tmp_path):
    class SmallEncoder:
        config = {"embedding_dim": 7}

        def encode_queries(self, *args, **kwargs):
            raise AssertionError("encoded")

    with pytest.raises(ValueError, match="The query encoder gives 7-d embeddings and the teacher .* 32-d"):
        evaluate_student(tiny_student, "s", [LocalBeirRetrieval.from_folder(beir)], tmp_path / "c", 8, SmallEncoder())
    assert not (tmp_path / "c").exists()  # not even the teacher's documents were encoded


def test_a_cascade_is_scored_per_task_from_its_own_queries(tiny_student, beir, tmp_path):
    """Routing none of the queries scores the student, all of them the teacher (retention 1), half of them routes half
    of each task's queries; the recipe writes the cascade's results beside, not over, the student's."""
    task = LocalBeirRetrieval.from_folder(beir)
    student = evaluate_student(tiny_student, "s", [task], tmp_path / "c", 8)
    reports = {
        rate: evaluate_student(tiny_student, "s", [task], tmp_path / "c", 8, cascade_rate=rate) for rate in (0, 0.5, 1)
    }
    scores = {rate: report["tasks"]["tinybeir"] for rate, report in reports.items()}
    assert scores[0]["student"]["ndcg_at_10"] == pytest.approx(student["tasks"]["tinybeir"]["student"]["ndcg_at_10"])
    assert scores[0]["routed"] == 0 and scores[0.5]["routed"] == 0.5 and scores[1]["routed"] == 1
    assert scores[1]["retention"] == pytest.approx(1.0, abs=1e-6) and reports[1]["cascade_rate"] == 1
    assert abs(student["mean_retention"] - 1) > 1e-3  # the tiny student ranks otherwise than its teacher
    tiny_student.save_pretrained(tmp_path / "student")
    out = tmp_path / "eval"
    common = ["recipes/evaluate.py", "--model", str(tmp_path / "student"), "--tasks", "tinybeir", "--data_dir",
              str(beir.parent), "--cache_dir", str(tmp_path / "c"), "--output_dir", str(out), "--cascade_rate",
              "0.5"]  # fmt: skip
    result = run_in_process(common)
    assert "the teacher encoded the queries the student was least sure of (tinybeir 50.0%)" in result.stdout
    assert [path.name for path in out.iterdir()] == ["eval_results_cascade.json"]
    run_in_process([*common, "--query_encoder", str(tmp_path / "student")])  # its sentence-transformers form
    for name in ("eval_results_cascade.json", "eval_results_cascade-sentence-transformers.json"):
        recorded = json.loads((out / name).read_text())["tasks"]["tinybeir"]
        assert recorded["retention"] == pytest.approx(scores[0.5]["retention"]) and recorded["routed"] == 0.5
