import errno
import json
import os
import socket
import tempfile

import pytest

from hfdistill.preflight import (
    check_resume_settings,
    check_spares_a_model,
    check_teacher_reachable,
    check_writable_dir,
    checkpoints,
    finished_run,
    move_aside,
    resume_checkpoint,
    run_lock,
    write_run_settings,
)
from hfdistill.run_files import RUN_LOCK


def test_writable_folders_pass_and_are_not_created(tmp_path):
    check_writable_dir(tmp_path / "new" / "run", "output_dir")
    check_writable_dir(tmp_path, "output_dir")
    assert list(tmp_path.iterdir()) == []


def test_a_file_or_a_path_through_a_file_is_not_a_folder(tmp_path):
    (tmp_path / "run").write_text("x")
    with pytest.raises(ValueError, match=r"--output_dir '.*run' is a file, not a folder; choose a folder"):
        check_writable_dir(tmp_path / "run", "output_dir")
    with pytest.raises(ValueError, match=r"--embedding_cache_dir '.*run/cache': '.*run' is a file, not a folder"):
        check_writable_dir(tmp_path / "run" / "cache", "embedding_cache_dir")


def test_an_unwritable_or_read_only_folder_is_an_error(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"--output_dir '/sys/hfdistill' is not writable \("):
        check_writable_dir("/sys/hfdistill", "output_dir")

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    with pytest.raises(ValueError, match=r"is not writable \(Read-only file system\); choose a writable folder"):
        check_writable_dir(tmp_path / "cache", "embedding_cache_dir")


def test_a_teacher_folder_that_does_not_exist_or_is_not_cached_offline(tmp_path, monkeypatch):
    from huggingface_hub import constants

    with pytest.raises(ValueError, match=r"holds no model weights \(\*.safetensors"):
        check_teacher_reachable(str(tmp_path))  # a folder without a model in it
    (tmp_path / "model.safetensors").write_bytes(b"")
    check_teacher_reachable(str(tmp_path))  # a model folder
    for missing in (str(tmp_path / "teacher"), "./models/teacher", "~/teacher"):
        with pytest.raises(ValueError, match="no such folder"):
            check_teacher_reachable(missing)
    (tmp_path / "weights.bin").write_text("x")
    with pytest.raises(ValueError, match="is a file; give a model folder or a Hub id"):
        check_teacher_reachable(str(tmp_path / "weights.bin"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="'nobody/no-such-teacher' is not in the local Hub cache and HF_HUB_OFFLINE"):
        check_teacher_reachable("nobody/no-such-teacher")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    check_teacher_reachable("nobody/no-such-teacher")  # online, the Hub answers for it when the config is read


def test_resume_takes_the_last_complete_checkpoint(tmp_path):
    for step in (5, 10, 15):
        (tmp_path / f"checkpoint-{step}").mkdir()
    for step in (5, 10):  # checkpoint-15 was being written when the run was killed
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert [c.name for c in checkpoints(tmp_path)] == ["checkpoint-5", "checkpoint-10"]
    assert resume_checkpoint(tmp_path, True) == str(tmp_path / "checkpoint-10")
    assert resume_checkpoint(tmp_path, str(tmp_path / "checkpoint-5")) == str(tmp_path / "checkpoint-5")
    assert resume_checkpoint(tmp_path, None) is None
    with pytest.raises(ValueError, match="checkpoint-15' is not a complete checkpoint"):
        resume_checkpoint(tmp_path, str(tmp_path / "checkpoint-15"))
    with pytest.raises(ValueError, match="holds no complete checkpoint"):
        resume_checkpoint(tmp_path / "checkpoint-15", True)


def test_finished_run_reads_the_record(tmp_path):
    assert finished_run(tmp_path) is None
    (tmp_path / "distillation.json").write_text(json.dumps({"global_steps": 60}))
    assert finished_run(tmp_path) == {"global_steps": 60}


def test_a_run_folder_is_held_by_one_run_and_a_dead_runs_lock_is_taken_over(tmp_path):
    import subprocess
    import sys

    with run_lock(tmp_path / "run"):
        lock = json.loads((tmp_path / "run" / RUN_LOCK).read_text())
        assert lock["pid"] == os.getpid()
        with pytest.raises(ValueError, match=rf"'.*run' is in use by another run \(pid {os.getpid()} on .*, started "):
            with run_lock(tmp_path / "run"):
                pass
    assert not (tmp_path / "run" / RUN_LOCK).exists()  # released when the run ends
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "run" / RUN_LOCK).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    with run_lock(tmp_path / "run"):  # its process is gone: the lock is stale
        assert json.loads((tmp_path / "run" / RUN_LOCK).read_text())["pid"] == os.getpid()


def test_starting_over_moves_the_old_run_aside_whole_unless_a_run_holds_it(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoint-20").mkdir(parents=True)
    (run / "distillation.json").write_text("{}")
    aside = move_aside(run)
    assert not run.exists() and aside.name.startswith("run.replaced-")
    assert sorted(p.name for p in aside.iterdir()) == ["checkpoint-20", "distillation.json"]
    assert move_aside(run) is None  # nothing there to keep
    with run_lock(run):
        with pytest.raises(ValueError, match="is in use by another run"):
            move_aside(run)


def test_a_resume_with_other_settings_is_refused_naming_each_difference(tmp_path):
    settings = {"teacher": "a/b", "learning_rate": 1e-3, "student_layers": [0, 11], "train_documents": None}
    check_resume_settings(tmp_path, settings)  # a run that recorded nothing is taken as it is
    write_run_settings(tmp_path, settings)
    check_resume_settings(tmp_path, dict(settings))
    changed = {**settings, "learning_rate": 5e-3, "student_layers": [0, 5]}
    with pytest.raises(ValueError, match=r"holds a run started with other settings \(learning_rate 0.001 -> 0.005; "
                       r"student_layers \[0, 11\] -> \[0, 5\]\); .*--overwrite_output_dir true"):  # fmt: skip
        check_resume_settings(tmp_path, changed)


def test_a_model_folder_is_never_written_over(tmp_path, tiny_student):
    tiny_student.save_pretrained(tmp_path / "student")
    with pytest.raises(ValueError, match=r"--output_dir '.*student' holds a saved model \(config.json, modules.json"):
        check_spares_a_model(tmp_path / "student")
    check_spares_a_model(tmp_path / "student" / "onnx-int8")  # a folder of its own, inside, is fine
    (tmp_path / "export" / "onnx").mkdir(parents=True)
    (tmp_path / "export" / "config.json").write_text("{}")
    check_spares_a_model(tmp_path / "export")  # an earlier export is written again
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        check_spares_a_model(tmp_path / "file")
