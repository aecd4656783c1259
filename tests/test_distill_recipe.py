"""The distill recipe end to end: real MiniLM teacher on real queries, and a 2-process accelerate launch."""

import json
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time

import pytest
import torch
from safetensors import safe_open

from hfdistill import AsymmetricDualEncoder, from_teacher
from tests.conftest import (
    QWEN3_PROMPTS,
    ROOT,
    SHARED,
    run_in_process,
    run_recipe_in_process,
    run_script,
    tiny_distill_args,
    write_st_teacher,
)

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.mark.slow
def test_minilm_recipe_improves_alignment_over_the_truncated_student(minilm, tmp_path):
    out = tmp_path / "minilm-2L"
    queries = str(SHARED / "data" / "queries" / "train_queries.tsv.gz")  # the offline override of the config's Hub set
    run_script(["recipes/distill.py", "recipes/configs/minilm-2L.yaml", "--output_dir", str(out),
                "--train_queries", queries, "--max_train_samples", "1536", "--num_eval_queries", "300",
                "--per_device_train_batch_size", "64", "--num_train_epochs", "1", "--warmup_steps", "0",
                "--eval_strategy", "no", "--save_strategy", "no", "--embedding_cache_dir", str(tmp_path / "cache"),
                "--disable_tqdm", "true"], ENV)  # fmt: skip
    untrained = json.loads((out / "untrained_results.json").read_text())
    trained = json.loads((out / "alignment_results.json").read_text())
    assert trained["eval_loss"] < 0.8 * untrained["untrained_loss"]
    assert trained["eval_mean_cosine"] > untrained["untrained_mean_cosine"] + 0.02
    record = json.loads((out / "distillation.json").read_text())
    assert record["num_train_queries"] == 1536 and record["global_steps"] == 27  # 1,536 queries + 154 joined, by 64
    assert record["adam_epsilon"] == 1e-8  # transformers' default: BERT's 1e-6 shrinks the MSE loss's steps
    assert record["mean_cosine"] == pytest.approx(trained["eval_mean_cosine"])
    assert "Held-out alignment" in (out / "README.md").read_text()
    model = AsymmetricDualEncoder.from_pretrained(out)
    assert model.config.student_layers == [0, 5] and len(model.query_encoder.encoder.layer) == 2
    assert model.config.teacher_name_or_path == minilm
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 3  # queries, with joined ones added, held-out


def test_accelerate_launch_two_processes_with_auto_layers(tiny_teacher, queries, tmp_path):
    out = tmp_path / "ddp"
    launcher = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
    distill = tiny_distill_args(tiny_teacher, queries, tmp_path, batch_size=8, layers=())
    auto = ["--student_layers", "auto", "--num_student_layers", "2", "--selection_training_steps", "2",
            "--selection_shortlist", "2"]  # fmt: skip
    # accelerate's --cpu launcher runs one process; --multi_gpu starts two (torchrun) and --use_cpu makes them gloo
    run_script(launcher + distill + auto + ["--max_steps", "3", "--output_dir", str(out), "--save_strategy", "no",
                                            "--use_cpu", "true"], ENV)  # fmt: skip
    state = json.loads((out / "all_results.json").read_text())
    assert state["train_samples_per_second"] > 0
    record = json.loads((out / "distillation.json").read_text())
    assert record["batch_size"] == 16  # 2 processes x 8
    selection = record["layer_selection"]  # both processes ran the same trials in lockstep under DDP
    assert len(selection["trials"]) == 2 and selection["selected"] == selection["trials"][0]["layers"]
    model = AsymmetricDualEncoder.from_pretrained(out)
    assert model.config.student_layers == selection["selected"]
    teacher = from_teacher(tiny_teacher, selection["selected"])
    for key, value in teacher.document_encoder.state_dict().items():  # the teacher stayed frozen under DDP
        assert torch.equal(model.document_encoder.state_dict()[key], value), key
    assert not torch.equal(
        model.query_encoder.encoder.layer[0].output.dense.weight,
        teacher.query_encoder.encoder.layer[0].output.dense.weight,
    )


def test_a_student_sharing_the_teacher_token_embeddings_keeps_them_and_stores_them_once(
    tiny_teacher, queries, tmp_path
):
    out = tmp_path / "shared"
    result = run_script(tiny_distill_args(tiny_teacher, queries, tmp_path, batch_size=16)
               + ["--max_steps", "3", "--learning_rate", "1e-2", "--output_dir", str(out), "--save_strategy", "no",
                  "--share_token_embeddings", "true", "--use_cpu", "true"], ENV)  # fmt: skip
    for notice in ("pin_memory", "PAD/BOS/EOS", "UserWarning"):  # avoidable warnings of a plain run
        assert notice not in result.stderr, result.stderr[-2000:]
    student, teacher = (
        AsymmetricDualEncoder.from_pretrained(out),
        from_teacher(tiny_teacher, [0, 3]),
    )
    assert student.query_encoder.get_input_embeddings() is student.document_encoder.get_input_embeddings()
    assert torch.equal(
        student.document_encoder.get_input_embeddings().weight, teacher.document_encoder.get_input_embeddings().weight
    )
    assert not torch.equal(
        student.query_encoder.encoder.layer[0].output.dense.weight,
        teacher.query_encoder.encoder.layer[0].output.dense.weight,
    )
    with safe_open(out / "model.safetensors", "pt") as f:
        assert [key for key in f.keys() if "word_embeddings" in key] == [
            "document_encoder.embeddings.word_embeddings.weight"
        ]


def test_joined_queries_are_added_examples_not_counted_as_queries(tiny_teacher, queries, tmp_path):
    out = tmp_path / "joined"
    distill = tiny_distill_args(tiny_teacher, queries, tmp_path, batch_size=30)  # 300 queries - 40 held out = 260
    added = ["--joined_query_fraction", "0.5", "--joined_query_max", "3"]
    run_in_process(distill + added + ["--num_train_epochs", "1", "--output_dir", str(out),
                                      "--save_strategy", "no", "--eval_strategy", "no"])  # fmt: skip
    record = json.loads((out / "distillation.json").read_text())
    assert (record["num_train_queries"], record["joined_query_fraction"], record["joined_query_max"]) == (260, 0.5, 3)
    assert record["global_steps"] == 13  # (260 + 130 joined) / 30
    rows = sorted(int(safe_open(f, "pt").metadata()["count"]) for f in (tmp_path / "cache").glob("*.safetensors"))
    assert rows == [40, 260, 390]  # held out, the plain queries on their own (for runs without additions), all
    card = (out / "README.md").read_text()
    assert "plus 50% as many examples of 2 to 3 of them joined" in card


def test_documents_are_added_examples_embedded_alone_after_a_query_only_run(tiny_teacher, queries, tmp_path):
    """The index's texts follow the queries and joined queries: a run adding them reads the query-only run's teacher
    embeddings and embeds only its new texts, trains on all, and records and states them."""
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": str(i), "title": "", "text": f"{a} {b}. {b} {a} the city river."})
                              + "\n" for i, (a, b) in enumerate(zip(queries[:60], queries[60:120]))))  # fmt: skip
    distill = tiny_distill_args(tiny_teacher, queries, tmp_path, batch_size=30) + [
        "--num_train_epochs",
        "1",
        "--save_strategy",
        "no",
        "--eval_strategy",
        "no",
        "--joined_query_fraction",
        "0.5",
    ]
    run_in_process(distill + ["--output_dir", str(tmp_path / "queries")])
    added = ["--train_documents", str(corpus), "--document_fraction", "0.25", "--train_languages", "en"]
    adapted = run_in_process(distill + added + ["--output_dir", str(tmp_path / "index")])
    record = json.loads((tmp_path / "index" / "distillation.json").read_text())
    assert (record["num_train_queries"], record["num_documents"], record["num_document_texts"]) == (260, 60, 65)
    assert record["global_steps"] == 16  # (260 queries + 130 joined + 65 document texts = 455) / 30, rounded up
    embedded = re.findall(r"Teacher embedded (\d+) texts .*\((\d+) more read from the cache\)", adapted.stderr)
    assert embedded == [("65", "390")]  # the queries, joined queries and held-out ones came from the first run
    card = (tmp_path / "index" / "README.md").read_text()
    assert "and 65 texts cut from 60 documents of the index it serves (a local file (`" in card
    assert "language:\n- en\n" in card


def test_prompt_free_decoder_student_from_the_recipe(queries, tmp_path):
    """A Qwen3-style teacher with an instruction prompt: targets with the prompt, a student on raw queries."""
    teacher = write_st_teacher(tmp_path / "qwen3", "qwen3", "lasttoken", prompts=QWEN3_PROMPTS)
    out = tmp_path / "prompt-free"
    run_in_process(tiny_distill_args(teacher, queries, tmp_path, batch_size=16)
                   + ["--student_query_prompt", "", "--max_steps", "4", "--learning_rate", "5e-3",
                      "--output_dir", str(out), "--save_strategy", "no", "--use_cpu", "true"])  # fmt: skip
    untrained = json.loads((out / "untrained_results.json").read_text())
    trained = json.loads((out / "alignment_results.json").read_text())
    assert trained["eval_loss"] < untrained["untrained_loss"]
    model = AsymmetricDualEncoder.from_pretrained(out)
    assert (model.config.query_prompt, model.config.student_prompt) == (QWEN3_PROMPTS["query"], "")
    assert model.tokenizer.padding_side == "left" and model.config.pooling_mode == "lasttoken"
    assert "The student is **prompt-free**" in (out / "README.md").read_text()
    assert json.loads((out / "distillation.json").read_text())["student_query_prompt"] == ""  # cards re-render from it


def test_a_prompt_the_teacher_lacks_fails_before_the_queries_load(tmp_path):
    teacher = write_st_teacher(tmp_path / "e5", "bert", prompts={"query": "query: "})
    result = run_in_process(["recipes/distill.py", "--teacher", teacher, "--query_prompt_name", "search_query",
                             "--train_queries", str(tmp_path / "missing.tsv"), "--output_dir", str(tmp_path / "out"),
                             "--report_to", "none"], check=False)  # fmt: skip
    assert result.returncode != 0
    assert "The teacher has no prompt named 'search_query'; its prompts are ['document', 'query']" in result.stderr
    assert "missing.tsv" not in result.stderr and not (tmp_path / "out").exists()


BAD_INPUTS = {  # case: (what to change, the one line it must end with)
    "jsonl line not JSON": ({"queries": '{"text": "a b"}\n{"text": "c",\n'}, r"queries.jsonl: line 2 is not JSON"),
    "jsonl record without text": (
        {"queries": '{"text": "a b"}\n{"text": "c"}\n{"query": "d"}\n'},
        r"queries.jsonl: line 3 has no 'text' field \(it has \['query'\]\); set --queries_column",
    ),
    "non-UTF-8 queries": ({"queries": b'{"text": "a b"}\n{"text": "caf\xe9"}\n'}, r"line 2 is not UTF-8 text"),
    "queries folder": ({"train_queries": "{tmp}/folder"}, r"Cannot read queries from '.*folder' as a dataset folder"),
    "output folder is a file": ({"output_dir": "{tmp}/queries.jsonl"}, r"--output_dir '.*' is a file, not a folder"),
    "cache under a file": (
        {"embedding_cache_dir": "{tmp}/queries.jsonl/cache"},
        r"--embedding_cache_dir '.*cache': '.*queries.jsonl' is a file",
    ),
    "teacher folder missing": ({"teacher": "{tmp}/no-teacher"}, r"--teacher '.*no-teacher': no such folder"),
    "teacher not cached offline": (
        {"teacher": "nobody/no-such-teacher"},
        r"'nobody/no-such-teacher' is not in the local Hub cache and HF_HUB_OFFLINE is set",
    ),
    "no held-out queries": ({"num_eval_queries": "0"}, r"num_eval_queries must be at least 1, got 0"),
    "layer out of range": ({"student_layers": "9"}, r"student_layers \[9\] out of range: the teacher has 4 layers"),
    "negative layer": ({"student_layers": "-1"}, r"student_layers \[-1\] out of range"),
    "too many layers": ({"num_student_layers": "7"}, r"num_student_layers=7 must be between 0 and the teacher's 4"),
    "teacher folder without weights": ({"teacher": "{tmp}/folder"}, r"--teacher '.*folder' holds no model weights"),
    "query file that is a folder": ({"train_queries": "{tmp}/folder/x.tsv"}, r"Query file '.*x.tsv' is a folder"),
    "unknown embedding dtype": ({"embedding_dtype": "int8"}, r"Unknown embedding_dtype 'int8'; choose one of"),
    "resume without checkpoint": (
        {"resume_from_checkpoint": "true"},
        r"holds no complete checkpoint .*; start it over with --overwrite_output_dir true instead",
    ),
    "learning rate not a number": ({"learning_rate": "nan"}, r"learning_rate must be a finite number > 0, got nan"),
    "learning rate infinite": ({"learning_rate": "inf"}, r"learning_rate must be a finite number > 0, got inf"),
    "zero steps": ({"max_steps": "0"}, r"max_steps=0 with num_train_epochs=3.0 trains no step"),
    "batch size zero": ({"per_device_train_batch_size": "0"}, r"per_device_train_batch_size must be at least 1"),
    "documents missing": ({"train_documents": "{tmp}/nope.jsonl"}, r"Document file '.*nope.jsonl' does not exist"),
    "documents without the text field": (
        {"train_documents": "{tmp}/queries.jsonl", "documents_column": "body"},
        r"queries.jsonl: line 1 has no 'body' field \(it has \['text'\]\); set --documents_column",
    ),
    "student model not cached offline": (
        {"student_model": "nosuch/model", "student_layers": "0"},
        r"--student_model 'nosuch/model' is not in the local Hub cache and HF_HUB_OFFLINE is set",
    ),
    "unknown document input": ({"document_inputs": "paragraphs"}, r"document_inputs must be some of"),
    "document fraction zero": ({"document_fraction": "0"}, r"document_fraction must be a number > 0, got 0.0"),
    "push without a token": (
        {"push_to_hub": "true", "base_model": "tester/tiny"},
        r"No Hugging Face token found for pushing to 'out': log in",
    ),
    "push of a local teacher's student": (
        {"push_to_hub": "true"},
        r"--push_to_hub: the teacher '.*' is a local path, .*: pass --base_model",
    ),
    "push to an unreachable Hub": (
        {"push_to_hub": "true", "hub_token": "hf_x", "base_model": "tester/tiny"},
        r"Pushing to 'out' failed: the Hub cannot be reached \(.*offline mode",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_ends_in_one_line_before_anything_is_written(tiny_teacher, tmp_path, monkeypatch, case):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr("hfdistill.hub.get_token", lambda: None)
    change, message = BAD_INPUTS[case]
    queries = change.pop("queries", "\n".join(json.dumps({"text": f"query {i}"}) for i in range(100)))
    path = tmp_path / "queries.jsonl"
    path.write_bytes(queries if isinstance(queries, bytes) else queries.encode())
    (tmp_path / "folder" / "x.tsv").mkdir(parents=True)  # holds no data files
    options = {"teacher": tiny_teacher, "train_queries": str(path), "output_dir": str(tmp_path / "out"),
               "embedding_cache_dir": str(tmp_path / "cache"), "num_eval_queries": "10", "report_to": "none",
               **{key: value.format(tmp=tmp_path) for key, value in change.items()}}  # fmt: skip
    line = run_recipe_in_process("distill", [f"--{key}={value}" for key, value in options.items()])
    assert re.search(message, line) and line.startswith("error: ") and "\n" not in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "queries.jsonl"]  # no output, no cache


def test_a_run_with_nothing_named_prints_its_usage_and_starts_nothing(tmp_path):
    result = run_in_process(["recipes/distill.py", "--output_dir", str(tmp_path / "out")], check=False)
    assert result.returncode == 2 and result.stderr.startswith("usage: distill.py"), result.stderr
    assert "error: the following arguments are required: --train_queries" in result.stderr
    assert not any(tmp_path.iterdir())


def _start(args: list[str], env: dict) -> tuple[subprocess.Popen, list[bytes]]:
    """Start `python <args>` from the repository root; its stderr is collected as it comes."""
    run = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    chunks = []
    threading.Thread(target=lambda: chunks.extend(iter(lambda: run.stderr.read1(4096), b"")), daemon=True).start()
    return run, chunks


def _kill_when(run: subprocess.Popen, ready, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert run.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    run.kill()  # SIGKILL: no handler runs
    run.wait()


def test_killed_runs_resume_to_the_same_step_and_no_file_holds_the_token(tiny_teacher, queries, tmp_path):
    out = tmp_path / "run"
    env = {**ENV, "HF_TOKEN": "hf_ENVMARKER"}
    many = [f"{query} {i}" for i, query in enumerate(queries * 17)]  # 5,100 distinct queries
    args = tiny_distill_args(tiny_teacher, many, tmp_path, batch_size=4) + [
        "--max_steps", "150", "--save_steps", "20", "--eval_strategy", "no", "--output_dir", str(out),
        "--hub_token", "hf_ARGMARKER", "--use_cpu", "true"]  # fmt: skip
    teacher_pass, stderr = _start(args + ["--teacher_batch_size", "1"], env)  # killed while the teacher embeds
    _kill_when(teacher_pass, lambda: b"Teacher: embedding texts" in b"".join(stderr))
    complete = [p for p in (tmp_path / "cache").glob("teacher-embeddings-*") if ".shard-" not in p.name]
    assert not complete  # nothing a later run would take as complete (finished shards are kept, by their own keys)
    training, _ = _start(args, env)  # killed once a checkpoint is complete
    _kill_when(training, lambda: (out / "checkpoint-20" / "trainer_state.json").exists())
    assert not (out / "distillation.json").exists()
    resumed = run_script(args + ["--resume_from_checkpoint", "true"], env)
    record = json.loads((out / "distillation.json").read_text())
    assert record["global_steps"] == 150  # where an uninterrupted run ends
    state = json.loads((out / "checkpoint-140" / "trainer_state.json").read_text())
    assert state["global_step"] == 140
    saved = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    for marker in (b"hf_ENVMARKER", b"hf_ARGMARKER"):
        assert not [str(path) for path, data in saved.items() if marker in data]
        assert marker.decode() not in resumed.stdout + resumed.stderr
    again = run_script(args + ["--resume_from_checkpoint", "true"], env)  # a finished run is left as it is
    assert f"{out} holds a finished run (150 steps): nothing to resume" in again.stdout
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == saved


def test_bf16_mixed_precision_trains_and_embeds_on_cpu(tiny_teacher, queries, tmp_path):
    out = tmp_path / "bf16"
    run_in_process(tiny_distill_args(tiny_teacher, queries, tmp_path, batch_size=16)
                   + ["--max_steps", "4", "--learning_rate", "5e-3", "--output_dir", str(out), "--save_strategy", "no",
                      "--bf16", "true", "--use_cpu", "true"])  # fmt: skip
    trained = json.loads((out / "alignment_results.json").read_text())
    assert math.isfinite(trained["eval_loss"]) and 0.5 < trained["eval_mean_cosine"] <= 1.0
    assert json.loads((out / "distillation.json").read_text())["global_steps"] == 4
    caches = list((tmp_path / "cache").glob("teacher-embeddings-*.safetensors"))
    assert len(caches) == 3  # queries, with joined ones added, held-out
    for path in caches:  # the teacher ran under bf16 autocast, and the key says so
        with safe_open(path, framework="pt") as f:
            assert f.metadata()["precision"] == "bfloat16"
    model = AsymmetricDualEncoder.from_pretrained(out)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # mixed precision: weights stay float32


def test_a_zero_layer_student_trains_saves_and_loads_in_both_ecosystems(tiny_teacher, queries, tmp_path):
    out = tmp_path / "zero"
    config = tmp_path / "zero.yaml"
    config.write_text("student_layers: []\n")  # a config's [] is a 0-layer student, as in Python
    run_in_process([tiny_distill_args(tiny_teacher, queries, tmp_path, batch_size=16, layers=())[0], str(config),
                    *tiny_distill_args(tiny_teacher, queries, tmp_path, batch_size=16, layers=())[1:],
                    "--max_steps", "6", "--learning_rate", "1e-2", "--output_dir", str(out), "--save_strategy", "no",
                    "--use_cpu", "true"])  # fmt: skip
    assert json.loads((out / "distillation.json").read_text())["global_steps"] == 6
    model = AsymmetricDualEncoder.from_pretrained(out)
    assert model.config.student_layers == [] and len(model.query_encoder.encoder.layer) == 0
    teacher_embeddings = model.document_encoder.get_input_embeddings().weight
    assert not torch.equal(model.query_encoder.get_input_embeddings().weight, teacher_embeddings)  # trained
    texts = ["what is a dense retriever", "zero layers"]
    torch.save({"q": model.encode_queries(texts), "d": model.encode_documents(texts)}, tmp_path / "ref.pt")
    script = f"""
import sys, torch
from transformers import AutoModel
from sentence_transformers import SentenceTransformer
ref, texts = torch.load({str(tmp_path / "ref.pt")!r}), {texts!r}
model = AutoModel.from_pretrained({str(out)!r}, trust_remote_code=True)
torch.testing.assert_close(model.encode_queries(texts), ref["q"], atol=1e-5, rtol=0)
st = SentenceTransformer({str(out)!r}, device="cpu")
torch.testing.assert_close(st.encode_query(texts, convert_to_tensor=True), ref["q"], atol=1e-5, rtol=0)
torch.testing.assert_close(st.encode_document(texts, convert_to_tensor=True), ref["d"], atol=1e-5, rtol=0)
assert "hfdistill" not in sys.modules
print("OK")
"""
    result = run_script(["-c", script], ENV)
    assert result.stdout.strip().endswith("OK")


def test_a_run_folder_holds_one_run_overwrite_starts_over_and_a_changed_resume_is_refused(
    tiny_teacher, queries, tmp_path
):
    out = tmp_path / "run"
    args = tiny_distill_args(tiny_teacher, queries, tmp_path, batch_size=16) + [
        "--max_steps", "4", "--save_steps", "2", "--eval_strategy", "no", "--output_dir", str(out)]  # fmt: skip
    run_in_process(args)
    first = json.loads((out / "distillation.json").read_text())
    run_in_process(args + ["--overwrite_output_dir", "true", "--learning_rate", "5e-3"])
    (aside,) = tmp_path.glob("run.replaced-*")  # the first run, whole, beside the new one
    assert json.loads((aside / "distillation.json").read_text()) == first
    assert json.loads((out / "distillation.json").read_text())["learning_rate"] == 5e-3
    assert not (out / "run.lock").exists() and (out / "checkpoint-4").is_dir()
    (out / "distillation.json").unlink()  # as if killed after its last checkpoint
    line = run_recipe_in_process("distill", [*args[1:], "--resume_from_checkpoint", "true"])
    assert re.search(r"holds a run started with other settings \(learning_rate 0.005 -> 0.001\)", line), line
    (out / "run.lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}))
    line = run_recipe_in_process("distill", [*args[1:], "--overwrite_output_dir", "true"])
    assert re.search(rf"'.*run' is in use by another run \(pid {os.getpid()} on ", line), line
    assert (out / "checkpoint-4").is_dir() and len(list(tmp_path.glob("run.replaced-*"))) == 1  # nothing moved


def test_two_processes_train_the_student_one_process_would(tiny_teacher, queries, tmp_path):
    """Two processes of batch 8 take the same steps as one of batch 16: the same queries per step, their gradients
    averaged. The recipe scores the untrained student before training; accelerate then took the model for prepared
    and skipped the DDP wrap, so each process trained a copy of its own (`EmbeddingAlignmentTrainer.train`)."""
    launcher = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
    common = ["--max_steps", "4", "--save_strategy", "no", "--use_cpu", "true", "--learning_rate", "1e-2"]
    one_process = tiny_distill_args(tiny_teacher, queries, tmp_path, 16) + common
    run_script(one_process + ["--output_dir", str(tmp_path / "one")], ENV)
    two_processes = launcher + tiny_distill_args(tiny_teacher, queries, tmp_path, 8) + common
    run_script(two_processes + ["--output_dir", str(tmp_path / "two")], ENV)
    one, two = (AsymmetricDualEncoder.from_pretrained(tmp_path / name) for name in ("one", "two"))
    untrained = from_teacher(tiny_teacher, [0, 3])
    assert json.loads((tmp_path / "two" / "distillation.json").read_text())["batch_size"] == 16
    for key, value in one.query_encoder.state_dict().items():
        torch.testing.assert_close(two.query_encoder.state_dict()[key], value, atol=1e-5, rtol=1e-4, msg=key)
    weight = "encoder.layer.0.output.dense.weight"
    assert not torch.equal(one.query_encoder.state_dict()[weight], untrained.query_encoder.state_dict()[weight])
