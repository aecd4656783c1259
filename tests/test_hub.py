"""Publishing against a local Hub server on 127.0.0.1 (tests/hub_server.py); huggingface_hub itself is untouched."""

import hashlib
import os
import textwrap
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from hfdistill import AsymmetricDualEncoder
from tests.conftest import SAVED_FILES, run_script, tiny_distill_args
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
    args = ["recipes/push.py", "--model", str(student), "--repo_id", repo_id, *extra]
    return run_script(args, hub_env(hub, tmp_path, token=token), check=check)


def test_push_then_download_gives_identical_embeddings(hub, saved_student, tmp_path):
    result = push(hub, tmp_path, saved_student, "tester/tiny-student")
    assert "Pushed" in result.stdout and TOKEN not in result.stdout + result.stderr
    assert len(hub.commits) == 1  # one commit
    files = set(hub.commits[0]["files"])
    assert SAVED_FILES | {"README.md"} <= files
    assert not any(name.endswith((".bin", ".pt")) for name in files)
    stored = hub.repos["tester/tiny-student"]["main"]["files"]
    # a safetensors file is an 8-byte header length, the header, then the tensors' bytes
    weights = [data for name, data in stored.items() if name.endswith(".safetensors")]
    stored_bytes = sum(len(data) - 8 - int.from_bytes(data[:8], "little") for data in weights)
    student = AsymmetricDualEncoder.from_pretrained(saved_student)
    assert stored_bytes == sum(p.numel() * p.element_size() for p in student.state_dict().values())  # each once
    assert TOKEN.encode() not in b"".join(stored.values())
    card = stored["README.md"].decode()
    assert "asymmetric query encoder" in card and "base_model:" in card
    script = textwrap.dedent(f"""
        import sys, torch
        from transformers import AutoModel
        from sentence_transformers import SentenceTransformer
        ref = torch.load({str(tmp_path / "ref.pt")!r})
        model = AutoModel.from_pretrained("tester/tiny-student", trust_remote_code=True)
        assert "hfdistill" not in sys.modules
        torch.testing.assert_close(model.encode_queries({TEXTS!r}), ref["q"], atol=1e-5, rtol=0)
        torch.testing.assert_close(model.encode_documents({TEXTS!r}), ref["d"], atol=1e-5, rtol=0)
        st = SentenceTransformer("tester/tiny-student", device="cpu")
        torch.testing.assert_close(st.encode_query({TEXTS!r}, convert_to_tensor=True), ref["q"], atol=1e-5, rtol=0)
        torch.testing.assert_close(st.encode_document({TEXTS!r}, convert_to_tensor=True), ref["d"], atol=1e-5, rtol=0)
        print("OK")
    """)
    assert run_script(["-c", script], hub_env(hub, tmp_path, token=None)).stdout.strip().endswith("OK")


def test_push_to_a_branch(hub, saved_student, tmp_path):
    push(hub, tmp_path, saved_student, "tester/b", "--revision", "v1")
    assert hub.commits[-1]["revision"] == "v1"
    assert STUDENT_WEIGHTS in hub.repos["tester/b"]["v1"]["files"]


def test_transient_server_errors_are_retried(hub, saved_student, tmp_path):
    hub.fail_commits = [500, 503]
    push(hub, tmp_path, saved_student, "tester/retry")
    assert sum(1 for method, path in hub.requests if path.endswith("/commit/main")) == 3
    assert STUDENT_WEIGHTS in hub.repos["tester/retry"]["main"]["files"]


def test_failing_server_gives_a_clear_error_and_keeps_local_files(hub, saved_student, tmp_path):
    before = folder_digest(saved_student)
    hub.fail_always = True
    result = push(hub, tmp_path, saved_student, "tester/down", check=False)
    assert result.returncode != 0
    assert "Pushing to 'tester/down' failed after retries (HTTP 500)" in result.stderr
    assert folder_digest(saved_student) == before


def test_bad_token_gives_the_login_message(hub, saved_student, tmp_path):
    result = push(hub, tmp_path, saved_student, "tester/x", token="hf_wrong", check=False)
    assert result.returncode != 0
    assert "hf auth login" in result.stderr and "HTTP 401" in result.stderr
    assert "hf_wrong" not in result.stderr


def test_trainer_push_includes_code_and_card(hub, tiny_teacher, queries, tmp_path):
    distill = tiny_distill_args(tiny_teacher, queries, tmp_path, batch_size=16)
    run_script(distill + ["--max_steps", "4", "--save_steps", "2", "--output_dir", str(tmp_path / "run"),
                          "--push_to_hub", "--hub_model_id", "tester/trained"], hub_env(hub, tmp_path))  # fmt: skip
    files = hub.repos["tester/trained"]["main"]["files"]
    assert {"modeling_asymmetric.py", "configuration_asymmetric.py", STUDENT_WEIGHTS, "README.md"} <= set(files)
    assert {"modules.json", "router_config.json", "document_0_Transformer/model.safetensors"} <= set(files)
    checkpoint_commits = [c for c in hub.commits if c["header"]["summary"].startswith("Training in progress")]
    assert checkpoint_commits and all("modeling_asymmetric.py" in c["files"] for c in checkpoint_commits[:1])
    card = ModelCard(files["README.md"].decode())
    assert card.data.base_model == tiny_teacher and "hfdistill" in card.data.tags
    assert "Held-out alignment" in card.text
