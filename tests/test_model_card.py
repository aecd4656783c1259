import json
import re

import pytest
from huggingface_hub import ModelCard

from hfdistill import from_teacher
from hfdistill.hub import stage_for_hub
from hfdistill.model_card import build_model_card, write_model_card
from tests.conftest import E5_PROMPTS, ROOT, run_script, write_st_teacher

EVAL = {
    "teacher": "t",
    "student": "s",
    "student_layers": [0, 3],
    "mean_retention": 0.9,
    "tasks": {"scifact": {"teacher": {"ndcg_at_10": 0.6}, "student": {"ndcg_at_10": 0.54}, "retention": 0.9}},
}
SPEED = {
    "teacher": "t", "student_layers": [0, 3], "device": "cpu", "threads": 2, "num_queries": 100, "repeats": 5,
    "encoders": [
        {"name": "teacher", "side": "teacher", "backend": "torch", "throughput_qps": {"32": 100.0},
         "latency_p50_ms": 10.0, "latency_p99_ms": 12.0},
        {"name": "student", "side": "student", "backend": "torch", "throughput_qps": {"32": 300.0},
         "latency_p50_ms": 4.0, "latency_p99_ms": 5.0},
    ],
}  # fmt: skip
TRAINING = {"train_queries": "org/queries", "num_train_queries": 1000, "num_eval_queries": 100, "loss": "mse",
            "learning_rate": 5e-4, "batch_size": 128, "warmup_steps": 0.1, "num_train_epochs": 3.0, "global_steps": 8,
            "untrained_mean_cosine": 0.5, "mean_cosine": 0.9}  # fmt: skip
PATTERN = re.compile(
    r"^---\n.*model-index:.*---\n\n# tiny\n\n"
    r"An \*\*asymmetric query encoder\*\* distilled from a local teacher .*layers \[0, 3\], 0-based.*"
    r"\| scifact \| not recorded \| 0\.6000 \| 0\.5400 \| 90\.0% \|.*\| \*\*mean\*\* \| \| \| \| \*\*90\.0%\*\* \|.*"
    r"\| 32 \| 100\.0 \| 300\.0 \| 3\.00x \|.*## Usage.*## Training.*"
    r"Loss: `mse`.*, 3 epoch\(s\), 8 steps\..*1,000 unlabeled queries.*"
    r"## Limitations.*@inproceedings\{wang-lyu-2023-query",
    re.DOTALL,
)


def write_results(folder):
    for name, data in (("eval_results", EVAL), ("speed_results", SPEED), ("distillation", TRAINING)):
        (folder / f"{name}.json").write_text(json.dumps(data))


def test_card_from_facts_round_trips(tiny_student, tiny_teacher, tmp_path):
    write_results(tmp_path)
    path = write_model_card(tiny_student, tmp_path, "me/tiny")
    text = path.read_text()
    assert PATTERN.match(text.replace("# me/tiny", "# tiny")), text[:2000]
    card = ModelCard.load(path)
    assert card.data.base_model is None and card.data.pipeline_tag == "feature-extraction"  # never a local path
    assert f"distilled from a local teacher (`{tiny_teacher}`)" in text and "huggingface.co//" not in text
    assert {"hfdistill", "sentence-transformers", "mteb"} <= set(card.data.tags)
    assert card.data.datasets == ["org/queries"]
    assert card.data.library_name == "transformers"  # no sentence-transformers files in the folder
    (result,) = card.data.eval_results  # a record without its source: a local set, and said to be one
    assert (result.dataset_type, result.dataset_name) == ("scifact", "scifact (local BEIR-format set)")
    assert (result.metric_type, result.metric_value) == ("ndcg_at_10", 0.54)
    assert "queries from [org/queries](https://huggingface.co/datasets/org/queries)" in text


def test_card_names_hub_datasets_by_id_and_local_files_by_name_only(tiny_student, tmp_path):
    write_results(tmp_path)
    tasks = {"SciFact": {**EVAL["tasks"]["scifact"], "dataset": "mteb/scifact"},
             "msmarco-sub5k": {**EVAL["tasks"]["scifact"], "dataset": "../data/beir/msmarco-sub5k"}}  # fmt: skip
    (tmp_path / "eval_results.json").write_text(json.dumps({**EVAL, "tasks": tasks}))
    (tmp_path / "distillation.json").write_text(json.dumps({**TRAINING, "train_queries": "../data/q.tsv.gz"}))
    (tmp_path / "modules.json").write_text("[]")
    card = build_model_card(tiny_student, tmp_path, "me/tiny")
    assert [(r.dataset_type, r.dataset_name) for r in card.data.eval_results] == [
        ("mteb/scifact", "SciFact"), ("msmarco-sub5k", "msmarco-sub5k (local BEIR-format set)")
    ]  # fmt: skip
    assert card.data.library_name == "sentence-transformers" and card.data.datasets is None
    text = str(card)
    assert "queries from a local file (`data/q.tsv.gz`)" in text and "../data" not in text
    assert "github.com" not in text
    assert text.index('SentenceTransformer("me/tiny")') < text.index('AutoModel.from_pretrained("me/tiny"')


@pytest.mark.parametrize(
    "student_prompt, sentence",
    [
        (None, "The student reads queries with the same prompt"),
        ("", "The student is **prompt-free**: it reads raw queries"),
    ],
)
def test_card_names_the_head_and_the_prompts(tmp_path, student_prompt, sentence):

    teacher = write_st_teacher(tmp_path / "e5", "bert", dense=(16,), prompts=E5_PROMPTS)
    student = from_teacher(teacher, [0, 3], student_query_prompt=student_prompt)
    text = write_model_card(student, tmp_path, "me/tiny").read_text()
    assert "head (mean pooling, Dense 32 -> 16 (Tanh), L2 normalization)" in text
    assert 'encodes queries as `"query: "` + query and documents as `"passage: "` + document' in text
    assert sentence in text


@pytest.mark.parametrize(
    "options, marker, sentence",
    [
        ({"share_token_embeddings": True}, "frozen and stored once",
         "embeddings (the student's token embeddings are the teacher's, frozen and stored once); AdamW"),
        ({"adam_epsilon": 1e-8}, "AdamW (ε", "; AdamW (ε 1e-08), learning rate"),
        ({"joined_query_fraction": 0.25}, "joined",
         "held out), plus 25% as many examples of two of them joined into one"),
        ({"joined_query_fraction": 0.25, "joined_query_max": 8}, "joined",
         "held out), plus 25% as many examples of 2 to 8 of them joined into one"),
    ],
)  # fmt: skip
def test_card_names_training_options_only_when_used(tiny_student, tmp_path, options, marker, sentence):
    write_results(tmp_path)
    assert marker not in write_model_card(tiny_student, tmp_path).read_text()
    (tmp_path / "distillation.json").write_text(json.dumps({**TRAINING, **options}))
    assert sentence in write_model_card(tiny_student, tmp_path).read_text()


def test_card_without_results_says_how_to_get_them(tiny_student, tmp_path):
    text = str(build_model_card(tiny_student, tmp_path))
    assert "Not evaluated yet" in text and "Not benchmarked yet" in text and "model-index" not in text


def test_card_problems_never_raise(tiny_student, tmp_path):
    (tmp_path / "eval_results.json").write_text(json.dumps({"tasks": {"x": {}}}))  # malformed results
    assert write_model_card(tiny_student, tmp_path) is None


def test_usage_snippets_run(tiny_student, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    stage_for_hub(tiny_student, _saved(tiny_student, tmp_path), repo, str(repo))
    snippets = re.findall(r"```python\n(.*?)```", (repo / "README.md").read_text(), re.DOTALL)
    assert len(snippets) == 3
    for snippet in snippets:
        run_script(["-c", snippet])


def _saved(model, tmp_path):
    model.save_pretrained(tmp_path / "saved")
    return tmp_path / "saved"


def test_card_shows_every_backend_of_the_speed_results(tiny_student, tmp_path):
    tiny_student.save_pretrained(tmp_path)
    exported = [
        {
            "name": side,
            "side": side,
            "backend": "onnx-int8",
            "throughput_qps": {"32": qps},
            "latency_p50_ms": 10.0,
            "latency_p99_ms": 20.0,
        }
        for side, qps in (("teacher", 250.0), ("student", 750.0))
    ]
    speed = {**SPEED, "encoders": SPEED["encoders"] + exported}
    (tmp_path / "speed_results.json").write_text(json.dumps(speed))
    write_model_card(tiny_student, tmp_path)
    card = (tmp_path / "README.md").read_text()
    assert "| 32 | 100.0 | 300.0 | 3.00x |" in card
    assert "With ONNX Runtime (`onnx-int8`; `python recipes/export.py` `--quantize int8`)" in card
    assert "| 32 | 750.0 | 7.50x | 3.00x |" in card
    tasks = {"scifact": {"teacher": {"ndcg_at_10": 0.6}, "student": {"ndcg_at_10": 0.57}, "retention": 0.95}}
    (tmp_path / "eval_results.json").write_text(json.dumps({"tasks": tasks, "mean_retention": 0.95}))
    int8 = {"scifact": {"teacher": {"ndcg_at_10": 0.6}, "student": {"ndcg_at_10": 0.564}, "retention": 0.94}}
    (tmp_path / "eval_results_onnx-int8.json").write_text(json.dumps(
        {"tasks": int8, "mean_retention": 0.94, "query_encoder": {"quantize": "int8"}}))  # fmt: skip
    write_model_card(tiny_student, tmp_path)
    card = (tmp_path / "README.md").read_text()
    assert "The query encoder exported with `recipes/export.py` (`onnx-int8`, int8 weights)" in card
    assert "| scifact | 0.5640 | 94.0% |" in card and "| **mean** | | **94.0%** |" in card
    # the card's ONNX usage runs as written: its export command, then its snippet on the exported folder
    command = re.search(r"`python (recipes/export\.py [^`]+)`", card).group(1)
    assert f"--model {tmp_path} --quantize int8 --output_dir query-encoder-onnx" in command
    exported = tmp_path / "exported"
    run_script(command.replace("query-encoder-onnx", str(exported)).split())
    snippet = re.findall(r"```python\n(.*?)```", card, re.DOTALL)[-1]
    assert "OnnxQueryEncoder" in snippet
    result = run_script(["-c", snippet.replace("query-encoder-onnx", str(exported)) + "print(tuple(queries.shape))"])
    assert result.stdout.strip().endswith(f"(1, {tiny_student.config.embedding_dim})")
    onnx_file = re.search(r'backend="onnx", model_kwargs=\{"file_name": "([^"]+)"\}', card).group(1)
    assert onnx_file == "onnx/model_qint8.onnx" and (exported / onnx_file).is_file()
    assert (exported / "modules.json").is_file()


def test_card_of_a_student_sharing_token_embeddings_says_how_to_load_it(tiny_teacher, tmp_path):

    student = from_teacher(tiny_teacher, [0, 3], share_token_embeddings=True)
    student.save_pretrained(tmp_path)
    card = build_model_card(student, tmp_path, "me/shared")  # no training record: the config says it
    assert card.data.library_name == "transformers"
    assert "shares the teacher's token embeddings, stored once" in card.text and "cannot express" not in card.text
    assert 'SentenceTransformer("me/shared")' not in card.text


def test_card_carries_the_teachers_license_and_names_its_languages_or_says_they_are_unknown(
    minilm, tiny_student, tmp_path
):
    student = from_teacher(minilm, [0, 5])
    card = build_model_card(student, tmp_path, "tester/minilm-student")
    assert card.data.license == "apache-2.0" and card.data.language is None  # nothing measured: no claim
    assert "so this card claims none (the teacher's card lists en)" in card.text
    assert "under the teacher's license (apache-2.0)" in card.text and "Which encoder you get" in card.text
    unknown = build_model_card(tiny_student, tmp_path, "tester/tiny")  # a local teacher without a card
    assert unknown.data.license is None and "the teacher's license is not known here" in unknown.text


def test_card_states_the_versions_the_package_requires(tiny_student, tmp_path):
    """A saved folder's code needs what hfdistill needs: the card's minimum versions are setup.cfg's."""
    tiny_student.save_pretrained(tmp_path)
    card = write_model_card(tiny_student, tmp_path).read_text()
    requires = (ROOT / "setup.cfg").read_text()
    for package in ("transformers", "sentence-transformers"):
        (pin,) = re.findall(rf"^\s+{package}(>=[\d.]+)$", requires, flags=re.M)
        assert f"`{package}{pin}`" in card


def test_card_claims_only_the_languages_trained_and_measured(tiny_student, tmp_path, monkeypatch):
    """The teacher's card lists many languages; the student's lists those of its training text and of its evaluated
    tasks, shows each task's language, and says the teacher's others were not measured."""
    import hfdistill.model_card as model_card

    monkeypatch.setattr(
        model_card, "teacher_card_data", lambda config: {"license": "mit", "language": ["multilingual", "de", "sw"]}
    )
    write_results(tmp_path)
    tasks = {"xquad-de": {**EVAL["tasks"]["scifact"], "languages": ["de"]},
             "SciFact": {**EVAL["tasks"]["scifact"], "languages": ["eng"]}}  # fmt: skip
    (tmp_path / "eval_results.json").write_text(json.dumps({**EVAL, "tasks": tasks}))
    (tmp_path / "distillation.json").write_text(json.dumps({**TRAINING, "train_languages": ["en", "de"]}))
    card = build_model_card(tiny_student, tmp_path, "me/tiny")
    assert card.data.language == ["de", "en", "eng"] and card.data.license == "mit"
    text = str(card)
    assert "| xquad-de | de | 0.6000 | 0.5400 | 90.0% |" in text and "| SciFact | eng |" in text
    assert "Languages of the training text: en, de." in text
    assert "languages the student was trained or evaluated in (de, en, eng); the teacher's card lists " in text
    assert "multilingual, de, sw, and in its other languages the student was not measured" in text
    (tmp_path / "eval_results.json").unlink()
    (tmp_path / "distillation.json").write_text(json.dumps(TRAINING))
    card = build_model_card(tiny_student, tmp_path, "me/tiny")
    assert card.data.language is None and "so this card claims none (the teacher's card lists" in str(card)
    assert "model_name" not in str(card.data.to_dict())  # no model-index without results, and no stray name


def test_card_states_the_documents_the_student_learned_from(tiny_student, tmp_path):
    write_results(tmp_path)
    documents = {"train_documents": ["org/corpus", "../beir/xquad-de/corpus.jsonl.gz"], "num_documents": 480,
                 "num_document_texts": 10000, "document_inputs": ["sentences", "spans"],
                 "document_span_tokens": [4, 24], "document_fraction": 0.2}  # fmt: skip
    assert "no labels, no documents." in str(build_model_card(tiny_student, tmp_path, "me/tiny"))
    (tmp_path / "distillation.json").write_text(json.dumps({**TRAINING, **documents}))
    card = build_model_card(tiny_student, tmp_path, "me/tiny")
    assert card.data.datasets == ["org/queries", "org/corpus"]
    assert (
        "and 10,000 texts cut from 480 documents of the index it serves ([org/corpus](https://huggingface.co/"
        "datasets/org/corpus), a local file (`xquad-de/corpus.jsonl.gz`); sentences and spans, spans of 4 to 24 "
        "tokens), aligned to the teacher's query embeddings of the same texts; no labels." in str(card)
    )
    assert "| scifact | " in str(card) and "Corpus-adapted:" not in str(card)  # its corpus was not trained on


@pytest.mark.parametrize(
    "source", ["../beir/xquad-de/corpus.jsonl.gz", "/data/xquad-de", "org/xquad-de", "org/XQuAD-DE"]
)
def test_card_marks_the_tasks_whose_corpus_the_student_trained_on(tiny_student, tmp_path, source):
    task = {"teacher": {"ndcg_at_10": 0.9}, "student": {"ndcg_at_10": 0.85}, "retention": 0.944}
    tasks = {"xquad-de": {**task, "dataset": "/elsewhere/beir/xquad-de"}, "msmarco": {**task, "dataset": "msmarco"}}
    (tmp_path / "eval_results.json").write_text(json.dumps({**EVAL, "tasks": tasks}))
    documents = {"train_documents": [source], "num_documents": 240, "num_document_texts": 8000,
                 "document_inputs": ["spans"], "document_span_tokens": [4, 24]}  # fmt: skip
    (tmp_path / "distillation.json").write_text(json.dumps({**TRAINING, **documents}))
    text = str(build_model_card(tiny_student, tmp_path, "me/tiny"))
    assert "| xquad-de (corpus-adapted) | " in text and "| msmarco | " in text
    assert "Corpus-adapted: the student trained on texts cut from that task's documents" in text


def test_card_reports_agreement_per_checked_set(tiny_student, tmp_path):
    checks = [{"query_set": f"{language}/queries.txt", "document_set": "corpus.txt", "queries": 50, "documents": 900,
               "k": 10, "top_k_overlap": overlap, "mean_query_cosine": 0.95}
              for language, overlap in (("de", 0.81), ("hi", 0.642))]  # fmt: skip
    (tmp_path / "agreement.json").write_text(json.dumps(checks))
    text = str(build_model_card(tiny_student, tmp_path, "me/tiny"))
    assert "| de/queries.txt | corpus.txt (900) | 50 | 81.0% | 0.9500 |" in text
    assert "| hi/queries.txt | corpus.txt (900) | 50 | 64.2% | 0.9500 |" in text


def test_query_encoder_layout_snippets_run(tiny_student, tmp_path):
    """Every snippet of a query-encoder repo's card runs: sentence-transformers with the teacher for documents,
    transformers, and onnxruntime alone on the int8 graph."""
    from hfdistill.export import export_query_encoder

    saved = _saved(tiny_student, tmp_path)
    export_query_encoder(tiny_student, tmp_path / "int8", quantize="int8")
    repo = tmp_path / "repo"
    stage_for_hub(tiny_student, saved, repo, str(repo), layout="query_encoder", query_encoder=tmp_path / "int8")
    text = (repo / "README.md").read_text()
    snippets = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    assert len(snippets) == 3 and "onnxruntime.InferenceSession" in snippets[2] and "model_qint8.onnx" in snippets[2]
    for snippet in snippets:
        run_script(["-c", snippet])
