"""Publishing: what is pushed, through huggingface_hub's own `HfApi` with its uploads recorded in a folder; what
needs real HTTP (retries on 5xx, a refused token, the Trainer's pushes) against a local Hub on 127.0.0.1
(tests/hub_server.py)."""

import hashlib
import json
import os
import textwrap
from pathlib import Path

import pytest
import torch
from huggingface_hub import CommitInfo, HfApi, ModelCard
from huggingface_hub.utils import filter_repo_objects

from hfdistill import AsymmetricDualEncoder
from hfdistill.hub import PushError, push_to_hub
from tests.conftest import SAVED_FILES, run_recipe_in_process, run_script, tiny_distill_args
from tests.hub_server import TOKEN, LocalHub

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["what is dense retrieval", "the cat of the city"]
STUDENT_WEIGHTS = "query_0_Transformer/model.safetensors"


@pytest.fixture
def hub():
    with LocalHub() as server:
        yield server


def hub_env(hub: LocalHub, tmp_path: Path, token: str | None = TOKEN) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_TOKEN", "HF_HOME")}
    env.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1")
    if token:
        env["HF_TOKEN"] = token
    return env


def folder_digest(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


BASE = "tester/tiny-teacher"  # the Hub id the tiny local teachers stand for


@pytest.fixture
def saved_student(tiny_student, tmp_path) -> Path:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in tiny_student.query_encoder.encoder.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    tiny_student.save_pretrained(tmp_path / "student")
    (tmp_path / "student" / "training_args.bin").write_bytes(b"not for the hub")
    torch.save(
        {"q": tiny_student.encode_queries(TEXTS), "d": tiny_student.encode_documents(TEXTS)}, tmp_path / "ref.pt"
    )
    return tmp_path / "student"


def push(hub, tmp_path, student: Path, repo_id: str, *extra: str, token: str | None = TOKEN, check: bool = True):
    args = ["recipes/push.py", "--model", str(student), "--repo_id", repo_id, "--base_model", BASE, *extra]
    return run_script(args, hub_env(hub, tmp_path, token=token), check=check)


class RecordedUploads:
    """`HfApi`'s repository calls, recorded: each upload copies the files its `allow_patterns` select (filtered by
    huggingface_hub's own `filter_repo_objects`) into `<root>/<repo_id>/<revision>`."""

    def __init__(self, root: Path):
        self.root, self.calls = root, []

    def create_repo(self, api, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def create_branch(self, api, repo_id, branch, **kwargs):
        self.calls.append(("create_branch", repo_id, branch))

    def upload_folder(self, api, *, repo_id, folder_path, revision=None, allow_patterns=None, **kwargs):
        files = [p.relative_to(folder_path).as_posix() for p in Path(folder_path).rglob("*") if p.is_file()]
        kept = list(filter_repo_objects(files, allow_patterns=allow_patterns))
        target = self.root / repo_id / (revision or "main")
        for name in kept:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes((Path(folder_path) / name).read_bytes())
        self.calls.append(("upload_folder", repo_id, revision, sorted(kept), kwargs["commit_message"]))
        return CommitInfo(
            commit_url=f"https://huggingface.co/{repo_id}/commit/1", commit_message="", commit_description="", oid="1"
        )


@pytest.fixture
def uploads(monkeypatch, tmp_path) -> RecordedUploads:
    recorded = RecordedUploads(tmp_path / "hub")
    for name in ("create_repo", "create_branch", "upload_folder"):
        method = getattr(recorded, name)
        monkeypatch.setattr(HfApi, name, lambda api, *args, _method=method, **kwargs: _method(api, *args, **kwargs))
    return recorded


def test_a_push_is_one_upload_of_the_student_each_tensor_once_and_loads_three_ways(uploads, saved_student, tmp_path):
    results = {"eval_results_onnx-int8.json"}  # an exported encoder's retention
    for name in results:
        (saved_student / name).write_text("{}")
    before = folder_digest(saved_student)
    url = push_to_hub(saved_student, "tester/tiny-student", base_model=BASE, token=TOKEN)
    assert url.startswith("https://huggingface.co/tester/tiny-student") and folder_digest(saved_student) == before
    (create, upload) = uploads.calls
    assert create == ("create_repo", "tester/tiny-student", {"private": False, "exist_ok": True})
    files = set(upload[3])
    assert upload[:3] == ("upload_folder", "tester/tiny-student", None)
    assert SAVED_FILES | {"README.md", "modules.json", "router_config.json"} | results <= files
    assert not any(name.endswith((".bin", ".pt")) for name in files)
    repo = tmp_path / "hub" / "tester" / "tiny-student" / "main"
    # a safetensors file is an 8-byte header length, the header, then the tensors' bytes
    weights = [path.read_bytes() for path in repo.rglob("*.safetensors")]
    stored_bytes = sum(len(data) - 8 - int.from_bytes(data[:8], "little") for data in weights)
    student = AsymmetricDualEncoder.from_pretrained(saved_student)
    assert stored_bytes == sum(p.numel() * p.element_size() for p in student.state_dict().values())  # each once
    assert all(TOKEN.encode() not in path.read_bytes() for path in repo.rglob("*") if path.is_file())
    card = ModelCard.load(repo / "README.md")
    assert (
        card.data.library_name == "sentence-transformers" and 'SentenceTransformer("tester/tiny-student")' in card.text
    )
    script = textwrap.dedent(f"""
        import sys, torch
        from transformers import AutoModel
        from sentence_transformers import SentenceTransformer
        ref, repo = torch.load({str(tmp_path / "ref.pt")!r}), {str(repo)!r}
        model = AutoModel.from_pretrained(repo, trust_remote_code=True)
        st = SentenceTransformer(repo, device="cpu")
        assert "hfdistill" not in sys.modules
        torch.testing.assert_close(model.encode_queries({TEXTS!r}), ref["q"], atol=1e-5, rtol=0)
        torch.testing.assert_close(model.encode_documents({TEXTS!r}), ref["d"], atol=1e-5, rtol=0)
        torch.testing.assert_close(st.encode_query({TEXTS!r}, convert_to_tensor=True), ref["q"], atol=1e-5, rtol=0)
        torch.testing.assert_close(st.encode_document({TEXTS!r}, convert_to_tensor=True), ref["d"], atol=1e-5, rtol=0)
        import hfdistill
        native = AutoModel.from_pretrained(repo)
        torch.testing.assert_close(native.encode_queries({TEXTS!r}), ref["q"], atol=1e-5, rtol=0)
        print("OK")
    """)
    assert run_script(["-c", script]).stdout.strip().endswith("OK")


def test_push_to_a_branch_creates_it(uploads, saved_student):
    push_to_hub(saved_student, "tester/b", base_model=BASE, revision="v1", token=TOKEN)
    assert [call[:3] for call in uploads.calls] == [
        ("create_repo", "tester/b", {"private": False, "exist_ok": True}),
        ("create_branch", "tester/b", "v1"),
        ("upload_folder", "tester/b", "v1"),
    ]
    assert STUDENT_WEIGHTS in uploads.calls[-1][3]


@pytest.fixture
def waits(hub, monkeypatch) -> list[float]:
    """Pushes in this process go to the local Hub, and huggingface_hub's retry waits are recorded, not slept."""
    import huggingface_hub.constants
    import huggingface_hub.utils._http

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.endpoint)
    monkeypatch.setattr(huggingface_hub.constants, "is_offline_mode", lambda: False)
    recorded = []
    monkeypatch.setattr(huggingface_hub.utils._http.time, "sleep", recorded.append)
    return recorded


def test_transient_server_errors_are_retried(hub, waits, saved_student):
    hub.fail_commits = [500, 503]
    push_to_hub(saved_student, "tester/retry", base_model=BASE, token=TOKEN)
    assert sum(1 for method, path in hub.requests if path.endswith("/commit/main")) == 3
    assert waits == [1, 2]  # huggingface_hub's own backoff
    assert STUDENT_WEIGHTS in hub.repos["tester/retry"]["main"]["files"]


def test_failing_server_gives_a_clear_error_and_keeps_local_files(hub, waits, saved_student):
    before = folder_digest(saved_student)
    hub.fail_always = True
    with pytest.raises(PushError, match=r"Pushing to 'tester/down' failed after retries \(HTTP 500\)"):
        push_to_hub(saved_student, "tester/down", base_model=BASE, token=TOKEN)
    assert waits and folder_digest(saved_student) == before


def test_bad_token_gives_the_login_message(hub, saved_student, tmp_path):
    result = push(hub, tmp_path, saved_student, "tester/x", token="hf_wrong", check=False)
    assert result.returncode != 0
    assert "hf auth login" in result.stderr and "HTTP 401" in result.stderr
    assert "hf_wrong" not in result.stderr


def test_the_recipe_pushes_the_saved_student_with_its_code_records_and_card(hub, tiny_teacher, queries, tmp_path):
    distill = tiny_distill_args(tiny_teacher, queries, tmp_path, batch_size=16)
    run_script(distill + ["--max_steps", "4", "--save_steps", "2", "--output_dir", str(tmp_path / "run"),
                          "--push_to_hub", "--hub_model_id", "tester/trained", "--base_model", BASE],
               hub_env(hub, tmp_path))  # fmt: skip
    files = hub.repos["tester/trained"]["main"]["files"]
    assert {"modeling_asymmetric.py", "configuration_asymmetric.py", "persistence.py", STUDENT_WEIGHTS} <= set(files)
    assert {"modules.json", "router_config.json", "document_0_Transformer/model.safetensors"} <= set(files)
    assert {"README.md", "distillation.json"} <= set(files) and not any("checkpoint" in name for name in files)
    assert len(hub.commits) == 1  # one commit of the finished run, none while it trained
    card = ModelCard(files["README.md"].decode())
    assert card.data.base_model == BASE and "hfdistill" in card.data.tags
    assert f"The teacher was loaded from `{tiny_teacher}`, a copy of it" in card.text
    assert "Held-out alignment" in card.text and "tester/trained" in card.text


def test_a_push_refused_after_training_keeps_the_student_and_its_records(hub, waits, tiny_teacher, queries, tmp_path):
    hub.fail_always = True  # the Hub takes the token and creates the repository, then refuses every upload
    out = tmp_path / "run"
    args = tiny_distill_args(tiny_teacher, queries, tmp_path, batch_size=16)[1:] + [
        "--max_steps", "2", "--save_strategy", "no", "--output_dir", str(out), "--push_to_hub", "true",
        "--hub_model_id", "tester/refused", "--hub_token", TOKEN, "--base_model", BASE]  # fmt: skip
    line = run_recipe_in_process("distill", args)
    assert line.startswith("error: Pushing to 'tester/refused' failed after retries (HTTP 500)") and "\n" not in line
    assert f"python recipes/push.py --model {out} --repo_id tester/refused" in line
    for name in ("distillation.json", "alignment_results.json", "all_results.json", "README.md"):
        assert (out / name).is_file(), name
    assert AsymmetricDualEncoder.from_pretrained(out).config.student_layers == [0, 3]


def test_a_push_checks_agreement_on_the_publishers_data_and_refuses_below_the_threshold(
    uploads, saved_student, queries, tmp_path
):
    from hfdistill.training_args import PublishCheckArguments

    (tmp_path / "q.txt").write_text("\n".join(queries[:30]))
    (tmp_path / "q2.txt").write_text("\n".join(queries[30:50]))
    (tmp_path / "d.txt").write_text("\n".join(queries[100:180]))
    check = dict(check_queries=[str(tmp_path / "q.txt"), str(tmp_path / "q2.txt")],
                 check_documents=[str(tmp_path / "d.txt")])  # fmt: skip
    with pytest.raises(ValueError, match=r"Not pushed: the student's top-10 overlap .* is below --min_top10_overlap "
                       r"100.0%: [\d.]+% on .*/q.txt, [\d.]+% on .*/q2.txt; --push_anyway"):  # fmt: skip
        push_to_hub(saved_student, "tester/checked", base_model=BASE,
                    check=PublishCheckArguments(**check, min_top10_overlap=1.0),
                    cache_dir=str(tmp_path / "cache"), token=TOKEN)  # fmt: skip
    assert not uploads.calls  # nothing created, nothing uploaded
    anyway = PublishCheckArguments(**check, min_top10_overlap=1.0, push_anyway=True)
    push_to_hub(
        saved_student, "tester/checked", base_model=BASE, check=anyway, cache_dir=str(tmp_path / "cache"), token=TOKEN
    )
    pushed = uploads.root / "tester/checked" / "main"
    first, second = json.loads((pushed / "agreement.json").read_text())  # one record per query set
    assert (first["queries"], second["queries"]) == (30, 20) and first["documents"] == second["documents"] == 80
    assert first["query_set"].endswith("/q.txt") and second["document_set"].endswith("/d.txt")
    assert str(tmp_path) not in json.dumps([first, second])  # folder and file name only, never the local path
    card = (pushed / "README.md").read_text()
    assert all(f"{100 * record['top_k_overlap']:.1f}%" in card for record in (first, second))
    with pytest.raises(
        ValueError, match=r"--check_documents takes one document set, or one per query set \(2\); got 3"
    ):
        PublishCheckArguments(check_queries=check["check_queries"], check_documents=[str(tmp_path / "d.txt")] * 3)
    with pytest.raises(ValueError, match=r"min_top10_overlap must be a share between 0 and 1, got 1.5"):
        PublishCheckArguments(**check, min_top10_overlap=1.5)
    with pytest.raises(ValueError, match="needs both --check_queries and --check_documents"):
        PublishCheckArguments(check_queries=str(tmp_path / "q.txt"))


def test_a_student_of_a_local_teacher_is_published_only_under_the_teachers_hub_id(uploads, saved_student, tmp_path):
    with pytest.raises(ValueError, match=r"was loaded from '.*', a local path, .*: pass --base_model <the teacher"):
        push_to_hub(saved_student, "tester/local", token=TOKEN)
    assert not uploads.calls
    push_to_hub(saved_student, "tester/local", base_model=BASE, token=TOKEN)
    card = ModelCard.load(tmp_path / "hub" / "tester" / "local" / "main" / "README.md")
    assert card.data.base_model == BASE and f"https://huggingface.co/{BASE}" in card.text
    assert "https://huggingface.co//" not in card.text and str(tmp_path) not in str(card.data.to_dict())


def test_the_query_encoder_alone_is_a_plain_model_that_every_loader_reads(uploads, saved_student, tmp_path):
    """`--layout query_encoder`: no remote code, no teacher inside; with the export folder, its ONNX graphs. Loaded by
    sentence-transformers, transformers and onnxruntime alone, each matching the student."""
    import onnxruntime
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoTokenizer

    from hfdistill.export import export_query_encoder

    student = AsymmetricDualEncoder.from_pretrained(saved_student)
    (saved_student / "eval_results.json").write_text(json.dumps({
        "teacher": "t", "student": "s", "student_layers": [0, 3], "mean_retention": 0.9,
        "tasks": {"scifact": {"teacher": {"ndcg_at_10": 0.6}, "student": {"ndcg_at_10": 0.54}, "retention": 0.9,
                              "languages": ["en"]}}}))  # fmt: skip
    export_query_encoder(student, tmp_path / "int8", quantize="int8")
    push_to_hub(saved_student, "tester/queries", base_model=BASE, layout="query_encoder",
                query_encoder=tmp_path / "int8", token=TOKEN)  # fmt: skip
    repo = uploads.root / "tester" / "queries" / "main"
    files = {str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file()}
    assert {"onnx/model.onnx", "onnx/model_qint8.onnx", "modules.json", "model.safetensors", "README.md",
            "eval_results.json", "query_encoder.json"} <= files  # fmt: skip
    assert not [f for f in files if f.endswith(".py") or f.startswith("document_") or f == "router_config.json"]
    expected = student.encode_queries(TEXTS)
    assert (SentenceTransformer(str(repo)).encode_query(TEXTS, convert_to_tensor=True) - expected).abs().max() < 1e-5
    tokenizer = AutoTokenizer.from_pretrained(str(repo))  # no remote code, no prompt
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    states = AutoModel.from_pretrained(str(repo))(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1)
    pooled = torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1)  # the card's head
    assert (pooled - expected).abs().max() < 1e-5
    session = onnxruntime.InferenceSession(str(repo / "onnx" / "model.onnx"))
    batch = tokenizer(TEXTS, padding=True, return_tensors="np")
    onnx = session.run(["sentence_embedding"], {k: batch[k] for k in ("input_ids", "attention_mask")})[0]
    assert abs(onnx - expected.numpy()).max() < 1e-4
    card = ModelCard.load(repo / "README.md")
    assert card.data.base_model == BASE and card.data.language == ["en"] and "This repository holds the query " \
        "encoder only" in card.text and "`onnx/model.onnx`, `onnx/model_qint8.onnx`" in card.text  # fmt: skip
    assert "trust_remote_code" not in card.text and 'SentenceTransformer("tester/queries")' in card.text


def test_a_dry_run_stages_each_layout_without_uploading_and_wrong_folders_are_refused(
    uploads, saved_student, tmp_path
):
    from hfdistill.export import export_query_encoder

    router = push_to_hub(saved_student, "tester/x", base_model=BASE, dry_run=tmp_path / "router", token=TOKEN)
    alone = push_to_hub(saved_student, "tester/x", base_model=BASE, layout="query_encoder",
                        dry_run=tmp_path / "alone", token=TOKEN)  # fmt: skip
    assert not uploads.calls
    assert (Path(router) / "router_config.json").is_file() and (Path(router) / "README.md").is_file()
    assert (Path(alone) / "modules.json").is_file() and not (Path(alone) / "router_config.json").exists()
    assert not (Path(alone) / "onnx").exists()  # a PyTorch query encoder, without an export
    with pytest.raises(ValueError, match=r"--dry_run '.*router' is not empty"):
        push_to_hub(saved_student, "tester/x", base_model=BASE, dry_run=tmp_path / "router", token=TOKEN)
    export_query_encoder(AsymmetricDualEncoder.from_pretrained(saved_student), tmp_path / "onnx")
    with pytest.raises(ValueError, match=r"'.*onnx' is an exported query encoder: publish it with its student"):
        push_to_hub(tmp_path / "onnx", "tester/x", base_model=BASE, token=TOKEN)
    with pytest.raises(ValueError, match=r"--query_encoder publishes an exported query encoder alone: pass --layout"):
        push_to_hub(saved_student, "tester/x", base_model=BASE, query_encoder=tmp_path / "onnx", token=TOKEN)
    teacher_side = tmp_path / "teacher-onnx"
    export_query_encoder(AsymmetricDualEncoder.from_pretrained(saved_student), teacher_side, side="teacher")
    with pytest.raises(ValueError, match=r"was exported from another model \(the teacher side"):
        push_to_hub(saved_student, "tester/x", base_model=BASE, layout="query_encoder", query_encoder=teacher_side,
                    token=TOKEN)  # fmt: skip
    with pytest.raises(ValueError, match=r"Unknown layout 'both'"):
        push_to_hub(saved_student, "tester/x", base_model=BASE, layout="both", token=TOKEN)
