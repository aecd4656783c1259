import gc
import json
import multiprocessing
import os
import pickle
import struct
import time
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from hfdistill import embedding_cache, from_teacher, teacher_pass
from hfdistill.embedding_cache import EmbeddingRows, fingerprint
from hfdistill.teacher_pass import cached_teacher_embeddings, write_teacher_embeddings


def test_fingerprint_depends_on_order_and_content():
    assert fingerprint(["a", "b"]) != fingerprint(["b", "a"])
    assert fingerprint(["ab"]) != fingerprint(["a", "b"])


def test_teacher_embedding_cache(tiny_student, queries, tmp_path):
    texts = queries[:20]
    first = cached_teacher_embeddings(tiny_student, texts, tmp_path)
    torch.testing.assert_close(first, tiny_student.encode_documents(texts))
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1
    # a cache hit does not run the teacher: poison it and read again
    tiny_student.document_encoder.forward = None
    torch.testing.assert_close(cached_teacher_embeddings(tiny_student, texts, tmp_path), first)


def test_cache_is_keyed_by_data_and_teacher(tiny_student, queries, tmp_path):
    cached_teacher_embeddings(tiny_student, queries[:10], tmp_path)
    cached_teacher_embeddings(tiny_student, queries[:11], tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) == 2
    tiny_student.config.max_length = 8
    cached_teacher_embeddings(tiny_student, queries[:10], tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) == 3
    # changed teacher weights (no Hub revision for a local teacher) give a new key
    with torch.no_grad():
        tiny_student.document_encoder.embeddings.word_embeddings.weight.add_(1.0)
    changed = cached_teacher_embeddings(tiny_student, queries[:10], tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) == 4
    torch.testing.assert_close(changed, tiny_student.encode_documents(queries[:10]))


def test_cache_extends_a_cached_prefix(tiny_student, queries, tmp_path, monkeypatch):
    expected = tiny_student.encode_documents(queries[:16])
    cached_teacher_embeddings(tiny_student, queries[:6], tmp_path)
    cached_teacher_embeddings(tiny_student, queries[:10], tmp_path)
    cached_teacher_embeddings(tiny_student, queries[1:5], tmp_path)  # not a prefix of what follows
    embedded = []
    encode = tiny_student.encode_teacher_queries
    monkeypatch.setattr(
        tiny_student, "encode_teacher_queries", lambda texts, **kw: embedded.append(texts) or encode(texts)
    )
    # the longest cached prefix (10) is read, only the other 6 texts go through the teacher
    torch.testing.assert_close(cached_teacher_embeddings(tiny_student, queries[:16], tmp_path), expected)
    assert embedded == [queries[10:16]]
    # the extended set is cached whole; a different order of the same texts shares no prefix and is embedded again
    torch.testing.assert_close(cached_teacher_embeddings(tiny_student, queries[:16], tmp_path), expected)
    cached_teacher_embeddings(tiny_student, queries[15::-1], tmp_path)
    assert embedded == [queries[10:16], queries[15::-1]]


def test_shared_prefix_is_cached_on_its_own(tiny_student, queries, tmp_path, monkeypatch):
    with_additions = queries[:6] + ["an added example", "another one"]
    cached_teacher_embeddings(tiny_student, with_additions, tmp_path, shared_prefix=6)
    embedded = []
    encode = tiny_student.encode_teacher_queries
    monkeypatch.setattr(
        tiny_student, "encode_teacher_queries", lambda texts, **kw: embedded.append(texts) or encode(texts)
    )
    plain = cached_teacher_embeddings(tiny_student, queries[:6], tmp_path)  # a run without the additions
    assert embedded == [] and len(list(tmp_path.glob("*.safetensors"))) == 2
    torch.testing.assert_close(plain, encode(queries[:6]))


def test_corrupt_or_stale_cache_is_recomputed(tiny_student, queries, tmp_path):
    texts = queries[:10]
    good = cached_teacher_embeddings(tiny_student, texts, tmp_path).clone()  # the file is overwritten in place
    (path,) = tmp_path.glob("*.safetensors")
    path.write_bytes(b"garbage")
    torch.testing.assert_close(cached_teacher_embeddings(tiny_student, texts, tmp_path), good)
    save_file({"embeddings": torch.zeros(10, 32)}, path, metadata={"key": "something-else"})
    torch.testing.assert_close(cached_teacher_embeddings(tiny_student, texts, tmp_path), good)


def test_cache_embeds_each_side_with_its_prompt(tiny_student, queries, tmp_path):
    texts = queries[:8]
    plain = cached_teacher_embeddings(tiny_student, texts, tmp_path)
    tiny_student.config.query_prompt, tiny_student.config.document_prompt = "query ", "document "
    as_queries = cached_teacher_embeddings(tiny_student, texts, tmp_path)
    as_documents = cached_teacher_embeddings(tiny_student, texts, tmp_path, prompt_type="document")
    torch.testing.assert_close(as_queries, tiny_student.encode_teacher_queries(texts))
    torch.testing.assert_close(as_documents, tiny_student.encode_documents(texts))
    tiny_student.config.document_prompt = ""
    torch.testing.assert_close(as_queries, tiny_student.encode_documents(["query " + t for t in texts]))
    assert (as_queries - plain).abs().max() > 1e-3 and (as_documents - as_queries).abs().max() > 1e-3
    assert len(list(tmp_path.glob("*.safetensors"))) == 3  # the prompt is part of the key
    with pytest.raises(ValueError, match="prompt_type must be one of"):
        cached_teacher_embeddings(tiny_student, texts, tmp_path, prompt_type="passage")


def test_a_cache_of_non_finite_values_is_recomputed_a_non_finite_teacher_is_an_error(tiny_student, queries, tmp_path):
    texts = queries[:10]
    good = cached_teacher_embeddings(tiny_student, texts, tmp_path).clone()  # the file is overwritten in place
    (path,) = tmp_path.glob("*.safetensors")
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata()  # valid key and row count: only the values are broken
    save_file({"embeddings": torch.full_like(good, float("nan"))}, path, metadata=metadata)
    torch.testing.assert_close(cached_teacher_embeddings(tiny_student, texts, tmp_path), good)
    with torch.no_grad():
        tiny_student.document_encoder.get_input_embeddings().weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="teacher's embeddings of texts 0 to 4 hold non-finite values"):
        cached_teacher_embeddings(tiny_student, queries[20:24], tmp_path)
    assert len(list(tmp_path.iterdir())) == 1  # nothing cached


def test_a_cache_that_cannot_be_written_keeps_the_embeddings_in_memory(tiny_student, queries, tmp_path, caplog):
    (tmp_path / "file").write_text("x")
    embeddings = cached_teacher_embeddings(tiny_student, queries[:5], tmp_path / "file" / "cache")
    torch.testing.assert_close(embeddings, tiny_student.encode_teacher_queries(queries[:5]))
    assert "Teacher embeddings not cached" in caplog.text and "keeps them in memory" in caplog.text
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_a_half_written_cache_file_is_never_read(tiny_student, queries, tmp_path, monkeypatch):
    """A run killed mid-write leaves its temporary file; a later run embeds again and the rename leaves one file."""
    texts = queries[:6]
    good = cached_teacher_embeddings(tiny_student, texts, tmp_path).clone()  # the file is overwritten in place
    (path,) = tmp_path.glob("*.safetensors")
    path.rename(tmp_path / f".{path.name}.tmp99999")
    (tmp_path / f".{path.name}.tmp99999").write_bytes((tmp_path / f".{path.name}.tmp99999").read_bytes()[:100])
    calls = []
    encode = tiny_student.encode_teacher_queries
    monkeypatch.setattr(tiny_student, "encode_teacher_queries", lambda t, **kw: calls.append(len(t)) or encode(t))
    torch.testing.assert_close(cached_teacher_embeddings(tiny_student, texts, tmp_path), good)
    assert calls == [6] and path.is_file()


CONCURRENT_RUN = """
import sys, time
from pathlib import Path
import torch
from hfdistill import from_teacher
from hfdistill.teacher_pass import cached_teacher_embeddings
teacher, cache, start, out = sys.argv[1:5]
model = from_teacher(teacher, [0, 3])
Path(out + ".ready").touch()
texts = [f"query number {i} about " + "word " * (i % 13) for i in range(3000)]
while not Path(start).exists():  # both processes start the teacher pass at the same moment
    time.sleep(0.01)
torch.save(cached_teacher_embeddings(model, texts, cache, batch_size=64), out)
"""


def test_two_runs_filling_one_cache_at_once_both_finish_and_leave_one_valid_file(tiny_teacher, tmp_path):
    import subprocess
    import sys

    from .conftest import ROOT

    start, cache = tmp_path / "start", tmp_path / "cache"
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_RUN, tiny_teacher, str(cache), str(start), str(tmp_path / f"out{i}.pt")],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    while not all((tmp_path / f"out{i}.pt.ready").exists() for i in range(2)):  # both have loaded the teacher
        assert all(run.poll() is None for run in runs), "a run ended before the teacher pass"
        time.sleep(0.05)
    start.touch()
    for run in runs:
        assert run.wait(timeout=300) == 0, run.stderr.read()[-3000:]
    (path,) = cache.iterdir()  # one file, no temporary left behind
    with safe_open(path, framework="pt") as f:
        cached = f.get_tensor("embeddings")
    assert cached.shape[0] == 3000
    for i in range(2):
        torch.testing.assert_close(torch.load(tmp_path / f"out{i}.pt"), cached)


def test_a_killed_teacher_pass_keeps_its_finished_shards(tiny_student, queries, tmp_path, monkeypatch):
    monkeypatch.setattr(teacher_pass, "SHARD_SIZE", 64)  # 300 texts: shards of 64, 64, 64, 64, 44
    encode, embedded = tiny_student.encode_teacher_queries, []

    def killed_after_two_shards(texts, **kwargs):
        if len(embedded) == 2:
            raise KeyboardInterrupt  # as the run dies mid-pass
        embedded.append(len(texts))
        return encode(texts, **kwargs)

    monkeypatch.setattr(tiny_student, "encode_teacher_queries", killed_after_two_shards)
    with pytest.raises(KeyboardInterrupt):
        cached_teacher_embeddings(tiny_student, queries, tmp_path)
    assert len(list(tmp_path.glob("*.shard-*.safetensors"))) == 2
    assert not list(tmp_path.glob("teacher-embeddings-????????????????????????????????.safetensors"))
    monkeypatch.setattr(tiny_student, "encode_teacher_queries", lambda texts, **kw: embedded.append(len(texts)) or
                        encode(texts, **kw))  # fmt: skip
    resumed = cached_teacher_embeddings(tiny_student, queries, tmp_path)
    assert embedded == [64, 64, 64, 64, 44]  # the restart embeds only the three shards not written
    torch.testing.assert_close(resumed, encode(queries), atol=1e-5, rtol=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == [p.name for p in tmp_path.glob("teacher-embeddings-*")]
    assert len(list(tmp_path.iterdir())) == 1  # the shards were joined into one file and removed


def test_shards_of_another_teacher_or_prompt_are_never_mixed_in(tiny_student, queries, tmp_path, monkeypatch):
    monkeypatch.setattr(teacher_pass, "SHARD_SIZE", 100)
    plain = cached_teacher_embeddings(tiny_student, queries, tmp_path / "plain").clone()
    plain_key = _key(tmp_path / "plain")
    tiny_student.config.query_prompt = "query: "
    prompted = cached_teacher_embeddings(tiny_student, queries, tmp_path / "prompted").clone()
    key = _key(tmp_path / "prompted")
    for path in (tmp_path / "prompted").iterdir():
        path.unlink()
    for first in (0, 100, 200):  # the plain teacher's shards, under the names of the prompted run's shards
        shard = tmp_path / "prompted" / teacher_pass.SHARD_FILE.format(key, first)
        save_file({"embeddings": plain[first : first + 100].contiguous()}, shard, {"key": f"{plain_key}:{first}"})
    again = cached_teacher_embeddings(tiny_student, queries, tmp_path / "prompted")
    torch.testing.assert_close(again, prompted)
    assert (prompted - plain).abs().max() > 1e-3


def _key(cache_dir) -> str:
    (path,) = cache_dir.glob("teacher-embeddings-*.safetensors")
    return path.name.removeprefix("teacher-embeddings-").removesuffix(".safetensors")


def test_float16_storage_halves_the_file_and_reads_memory_mapped(tiny_student, queries, tmp_path):
    full = cached_teacher_embeddings(tiny_student, queries, tmp_path / "fp32")
    half = cached_teacher_embeddings(tiny_student, queries, tmp_path / "fp16", dtype="float16")
    assert full.dtype == torch.float32 and half.dtype == torch.float16
    torch.testing.assert_close(half.float(), full, atol=1e-3, rtol=1e-3)
    (full_file,), (half_file,) = (tmp_path / "fp32").iterdir(), (tmp_path / "fp16").iterdir()
    assert half_file.stat().st_size < 0.55 * full_file.stat().st_size and half_file.name != full_file.name
    assert str(half_file) in Path("/proc/self/maps").read_text()  # memory-mapped: rows are read as they are used
    with pytest.raises(ValueError, match=r"Unknown embedding dtype 'int8'; choose one of \('float32', 'float16'\)"):
        cached_teacher_embeddings(tiny_student, queries, tmp_path, dtype="int8")


def test_training_reads_rows_from_the_file_without_mapping_it(tiny_student, queries, tmp_path):
    expected = cached_teacher_embeddings(tiny_student, queries, tmp_path, dtype="float16").clone()
    gc.collect()  # the memory map above is closed
    rows = cached_teacher_embeddings(tiny_student, queries, tmp_path, dtype="float16", rows=True)
    assert isinstance(rows, EmbeddingRows) and rows.shape == expected.shape and len(rows) == len(queries)
    assert rows[5].dtype == torch.float16 and torch.equal(rows[5], expected[5]) and torch.equal(rows[-1], expected[-1])
    assert torch.equal(rows[3:9], expected[3:9]) and torch.equal(rows[:], expected) and rows[9:3].shape == (0, 32)
    assert torch.equal(pickle.loads(pickle.dumps(rows))[7], expected[7])  # a spawned worker opens its own file
    loader = torch.utils.data.DataLoader(rows, batch_size=3, num_workers=2, multiprocessing_context="fork")
    assert torch.equal(torch.cat(list(loader)), expected)
    position = rows._file.tell()  # a forked process reading rows must not move the parent's read position
    child = multiprocessing.get_context("fork").Process(target=rows.__getitem__, args=(40,))
    child.start()
    child.join()
    assert child.exitcode == 0 and rows._file.tell() == position
    (path,) = tmp_path.iterdir()
    assert str(path) not in Path("/proc/self/maps").read_text()  # read, not mapped: RSS does not grow with the file
    with pytest.raises(IndexError):
        rows[len(queries)]
    with pytest.raises(ValueError, match="contiguous slices only, got step 2"):
        rows[::2]


SHARDED_RUN = """
import json, sys
import torch
from accelerate import PartialState
from hfdistill import from_teacher, teacher_pass
teacher, cache, out = sys.argv[1:4]
state = PartialState(cpu=True)
teacher_pass.SHARD_SIZE = 256
model = from_teacher(teacher, [0, 3])
texts = [f"query number {i} about " + "word " * (i % 13) for i in range(4096)]
embedded, encode = [], model.encode_teacher_queries
model.encode_teacher_queries = lambda t, **kw: embedded.append(len(t)) or encode(t, **kw)
embeddings = teacher_pass.cached_teacher_embeddings(model, texts, cache, batch_size=64)
torch.save(embeddings.clone(), f"{out}/rank{state.process_index}.pt")
json.dump({"embedded": sum(embedded)}, open(f"{out}/rank{state.process_index}.json", "w"))
"""


def test_two_processes_share_the_teacher_pass_and_write_the_single_process_cache(tiny_teacher, tmp_path):

    from .conftest import run_script

    launch = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
    script = tmp_path / "sharded_run.py"
    script.write_text(SHARDED_RUN)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    run_script(launch + [str(script), tiny_teacher, str(tmp_path / "cache"), str(tmp_path)], env)
    seconds = time.perf_counter() - start
    counts = [json.loads((tmp_path / f"rank{rank}.json").read_text())["embedded"] for rank in (0, 1)]
    assert counts == [2048, 2048], counts  # 16 shards, 8 each
    model = from_teacher(tiny_teacher, [0, 3])
    texts = [f"query number {i} about " + "word " * (i % 13) for i in range(4096)]
    single = cached_teacher_embeddings(model, texts, tmp_path / "single", batch_size=64)
    for rank in (0, 1):
        torch.testing.assert_close(torch.load(tmp_path / f"rank{rank}.pt"), single, atol=1e-5, rtol=1e-4)
    (shared,) = (tmp_path / "cache").iterdir()  # one complete file, the shards joined and removed
    assert shared.name == next((tmp_path / "single").iterdir()).name
    reread = cached_teacher_embeddings(model, texts, tmp_path / "cache", batch_size=64)  # one process reuses it
    torch.testing.assert_close(reread, single, atol=1e-5, rtol=1e-4)
    print(f"2-process teacher pass of 4,096 texts, launch included: {seconds:.1f} s")


def test_a_bfloat16_teacher_pass_is_cached_apart_from_the_float32_one(tiny_student, queries, tmp_path):
    full = cached_teacher_embeddings(tiny_student, queries, tmp_path)
    mixed = cached_teacher_embeddings(tiny_student, queries, tmp_path, precision="bfloat16")
    assert 0 < (mixed - full).abs().max() < 0.05  # bf16's rounding (the fp32 pass repeats exactly), not a read back
    assert len(list(tmp_path.iterdir())) == 2
    torch.testing.assert_close(cached_teacher_embeddings(tiny_student, queries, tmp_path), full)
    with pytest.raises(ValueError, match=r"Unknown teacher precision 'int4'"):
        cached_teacher_embeddings(tiny_student, queries, tmp_path, precision="int4")


def _counting(monkeypatch, model) -> list[list[str]]:
    """The texts each call of the teacher's query encoding embeds, recorded."""
    embedded, encode = [], model.encode_teacher_queries
    monkeypatch.setattr(model, "encode_teacher_queries", lambda texts, **kw: embedded.append(texts) or encode(texts))
    return embedded


def test_a_smaller_run_reads_the_leading_blocks_of_a_larger_runs_file(tiny_student, queries, tmp_path, monkeypatch):
    monkeypatch.setattr(embedding_cache, "PREFIX_BLOCK", 4)  # the file of 10 texts records blocks of 4 and 8
    whole = cached_teacher_embeddings(tiny_student, queries[:10], tmp_path).clone()
    embedded = _counting(monkeypatch, tiny_student)
    torch.testing.assert_close(cached_teacher_embeddings(tiny_student, queries[:7], tmp_path), whole[:7])
    assert embedded == [queries[4:7]]  # the first block of 4 was read, only 3 texts embedded
    torch.testing.assert_close(cached_teacher_embeddings(tiny_student, queries[:9], tmp_path), whole[:9])
    assert embedded == [queries[4:7], queries[8:9]]
    cached_teacher_embeddings(tiny_student, ["another first query"] + queries[1:7], tmp_path)
    assert len(embedded[-1]) == 7  # a different first block shares nothing


def test_a_cache_file_whose_values_were_edited_is_embedded_again(tiny_student, queries, tmp_path, caplog):
    good = cached_teacher_embeddings(tiny_student, queries[:10], tmp_path).clone()
    (path,) = tmp_path.glob("*.safetensors")
    data = bytearray(path.read_bytes())
    data[-8:-4] = struct.pack("<f", 0.5)  # one finite value of the last row changed in place
    path.write_bytes(bytes(data))
    again = cached_teacher_embeddings(tiny_student, queries[:10], tmp_path)
    torch.testing.assert_close(again, good)
    assert "values that differ from those written" in caplog.text and str(path) in caplog.text


def test_a_full_disk_keeps_the_embeddings_in_memory(tiny_student, queries, tmp_path, monkeypatch, caplog):
    def no_space(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(No space left on device (os error 28))")

    monkeypatch.setattr(embedding_cache, "save_file", no_space)
    embeddings = cached_teacher_embeddings(tiny_student, queries[:6], tmp_path)
    torch.testing.assert_close(embeddings, tiny_student.encode_teacher_queries(queries[:6]))
    assert "No space left on device" in caplog.text and "keeps them in memory" in caplog.text
    assert not list(tmp_path.iterdir())  # no temporary file left


def test_a_run_whose_shards_another_run_joined_reads_the_joined_file(tiny_student, queries, tmp_path, monkeypatch):
    """Two runs on one empty cache: the other finishes first, joins the shards both wrote and removes them."""
    monkeypatch.setattr(teacher_pass, "SHARD_SIZE", 8)
    shards_then_the_other_run_joins = teacher_pass._embed_shards

    def embed_shards(encode, texts, start, cache_dir, key, *args):
        result = shards_then_the_other_run_joins(encode, texts, start, cache_dir, key, *args)
        write_teacher_embeddings(tiny_student, texts, encode(texts), cache_dir)
        for shard in cache_dir.glob("*.shard-*"):
            shard.unlink()
        return result

    monkeypatch.setattr(teacher_pass, "_embed_shards", embed_shards)
    embeddings = cached_teacher_embeddings(tiny_student, queries[:20], tmp_path)
    torch.testing.assert_close(embeddings, tiny_student.encode_teacher_queries(queries[:20]))
    assert len(list(tmp_path.iterdir())) == 1


def test_the_teacher_pass_progress_moves_with_every_batch(tiny_student, queries, tmp_path, monkeypatch):
    """The bar shows texts/s and an ETA from the first batch on, not once per shard of 8,192 texts."""
    updates = []

    class Recording:
        def __init__(self, *args, **kwargs):
            self.unit = kwargs.get("unit")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, count):
            updates.append(count)

    monkeypatch.setattr(teacher_pass, "tqdm", Recording)
    cached_teacher_embeddings(tiny_student, queries[:150], tmp_path, batch_size=32)
    assert updates == [32, 32, 32, 32, 22]
    updates.clear()
    monkeypatch.setattr(teacher_pass, "SHARD_SIZE", 100)
    cached_teacher_embeddings(tiny_student, queries[:150], tmp_path / "sharded", batch_size=64)
    assert updates == [64, 36, 50]  # each shard in batches
