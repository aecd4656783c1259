import gzip
import json

import pytest
import torch

from hfdistill.data import (
    AlignmentCollator,
    QueryAlignmentDataset,
    join_queries,
    load_queries,
    load_query_splits,
    split_queries,
    training_texts,
)
from hfdistill.training_args import QueryDataArguments


def test_load_local_formats(tmp_path):
    (tmp_path / "q.tsv").write_text("1\twhat is x\n2\t  why y \n\n")
    with gzip.open(tmp_path / "q.tsv.gz", "wt") as f:
        f.write("a:1\twhat is x\n")
    (tmp_path / "q.jsonl").write_text(json.dumps({"query": "what is x"}) + "\n" + json.dumps({"query": "z"}) + "\n")
    (tmp_path / "q.txt").write_text("what is x\nwhy y\n")
    assert load_queries(str(tmp_path / "q.tsv")) == ["what is x", "why y"]
    assert load_queries(str(tmp_path / "q.tsv.gz")) == ["what is x"]
    assert load_queries(str(tmp_path / "q.jsonl"), column="query") == ["what is x", "z"]
    assert load_queries(str(tmp_path / "q.txt")) == ["what is x", "why y"]


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.tsv"):
        load_queries(str(tmp_path / "missing.tsv"))
    (tmp_path / "empty.tsv").write_text("\n\n")
    with pytest.raises(ValueError, match="No queries found"):
        load_queries(str(tmp_path / "empty.tsv"))
    (tmp_path / "bad.tsv").write_text("no tab here\n")
    with pytest.raises(ValueError, match="line 1 is not `id<TAB>text`"):
        load_queries(str(tmp_path / "bad.tsv"))
    (tmp_path / "q.jsonl").write_text(json.dumps({"query": "x"}) + "\n")
    with pytest.raises(ValueError, match="no 'text' field"):
        load_queries(str(tmp_path / "q.jsonl"))
    (tmp_path / "q.xlsx").write_text("x\n")
    with pytest.raises(ValueError, match="unsupported format"):
        load_queries(str(tmp_path / "q.xlsx"))


READERS = [".tsv", ".tsv.gz", ".jsonl", ".jsonl.gz", ".txt", ".txt.gz"]
TEXTS = ["what is x", "why y", "café near me", "how to z"]


def _line(suffix: str, number: int, text: str) -> str:
    record = json.dumps({"text": text}, ensure_ascii=False)
    return {".tsv": f"{number}\t{text}", ".jsonl": record, ".txt": text}[suffix.removesuffix(".gz")]


def _write(path, data: bytes) -> str:
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return str(path)


@pytest.mark.parametrize("suffix", READERS)
def test_every_reader_takes_a_byte_order_mark_and_crlf_line_ends(tmp_path, suffix):
    lines = [_line(suffix, i, text) for i, text in enumerate(TEXTS)]
    plain = _write(tmp_path / f"plain{suffix}", "\n".join(lines).encode())
    windows = _write(tmp_path / f"windows{suffix}", b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    assert load_queries(plain) == load_queries(windows) == TEXTS


@pytest.mark.parametrize("suffix", READERS)
@pytest.mark.parametrize(
    "fault, message",
    [
        (
            "non-utf8",
            r"line 3 is not UTF-8 text \(invalid continuation byte at byte \d+\); re-encode the file as UTF-8",
        ),
        ("empty", "No queries found in"),
        (
            "malformed",
            r"line 3 is not (`id<TAB>text`: 'no tab here'|JSON \(.*, column \d+\); each line is one record)",
        ),
        ("truncated-gzip", r"the gzip stream is truncated or corrupt after line \d+ .*; re-create the file"),
    ],
)
def test_every_reader_names_the_file_and_line_of_a_fault(tmp_path, suffix, fault, message):
    if fault == "truncated-gzip" and not suffix.endswith(".gz") or fault == "malformed" and ".txt" in suffix:
        pytest.skip("only gzip files can be truncated gzip; any line of a .txt file is a query")
    lines = [_line(suffix, i, text).encode() for i, text in enumerate(TEXTS)]
    if fault == "non-utf8":
        lines[2] = lines[2].replace("é".encode(), b"\xe9")
    elif fault == "malformed":
        lines[2] = {".tsv": b"no tab here", ".jsonl": b'{"text": "a",'}[suffix.removesuffix(".gz")]
    data = b"" if fault == "empty" else b"\n".join(lines * 200)  # long enough that a cut gzip has whole lines
    path = tmp_path / f"queries{suffix}"
    _write(path, data)
    if fault == "truncated-gzip":
        path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ValueError, match=message) as error:
        load_queries(str(path))
    assert str(path) in str(error.value)


def test_a_jsonl_record_without_the_text_field_is_named_by_its_line(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"text": "a"}) + "\n" + json.dumps({"query": "b"}) + "\n" + "[1, 2]\n")
    with pytest.raises(ValueError, match=r"q.jsonl: line 2 has no 'text' field \(it has \['query'\]\); set --queries"):
        load_queries(str(path))
    path.write_text(json.dumps({"text": "a"}) + "\n" + "[1, 2]\n")
    with pytest.raises(ValueError, match=r"line 2 has no 'text' field \(it has list\)"):
        load_queries(str(path))


def test_a_folder_that_is_no_dataset_is_one_clear_error(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.bin").write_bytes(b"\x00\x01")
    with pytest.raises(ValueError, match=r"Cannot read queries from .*folder' as a dataset folder \(.*\); give a"):
        load_queries(str(tmp_path / "folder"))


def test_load_hub_style_dataset_directory(tmp_path):
    from datasets import Dataset

    Dataset.from_dict({"query": ["a b", "c d"]}).to_json(str(tmp_path / "data" / "train.jsonl"))
    assert load_queries(str(tmp_path / "data"), split="train", column="query") == ["a b", "c d"]
    with pytest.raises(ValueError, match="has no column 'text'"):
        load_queries(str(tmp_path / "data"))


def test_split_dedups_shuffles_and_caps():
    texts = [f"q{i}" for i in range(100)] + ["q1", "q2"]
    train, held_out = split_queries(texts, num_eval=10, max_train_samples=50, seed=1)
    assert len(held_out) == 10 and len(train) == 50
    assert not set(train) & set(held_out)
    assert len(set(train)) == 50
    assert split_queries(texts, 10, seed=1) == split_queries(texts, 10, seed=1)
    assert split_queries(texts, 10, seed=1)[1] != split_queries(texts, 10, seed=2)[1]
    with pytest.raises(ValueError, match="leaves no training queries"):
        split_queries(["a", "b"], num_eval=2)


def test_split_seed_fixes_the_split_whatever_the_training_seed(tmp_path):
    (tmp_path / "q.txt").write_text("\n".join(f"query {i}" for i in range(100)))
    args = QueryDataArguments(train_queries=str(tmp_path / "q.txt"), num_eval_queries=10)
    assert load_query_splits(args, 1) != load_query_splits(args, 2)  # by default the training seed shuffles
    args.split_seed = 7
    assert (
        load_query_splits(args, 1)
        == load_query_splits(args, 2)
        == split_queries([f"query {i}" for i in range(100)], 10, seed=7)
    )


def test_join_queries_appends_longer_examples(tmp_path):
    texts = [f"query {i}" for i in range(100)]
    joined = join_queries(texts, 0.25, seed=3)
    assert len(joined) == 125 and joined[:100] == texts  # the plain list first: its cached embeddings are reused
    assert set(joined[100:]) <= {f"{first} {second}" for first in texts for second in texts}  # space-joined pairs
    assert join_queries(texts, 0.25, seed=3) == joined and join_queries(texts, 0.25, seed=4) != joined
    assert join_queries(texts, 0.0) == texts
    with pytest.raises(ValueError, match="joined_query_fraction must be >= 0, got -0.5"):
        join_queries(texts, -0.5)
    (tmp_path / "q.txt").write_text("\n".join(texts))
    args = QueryDataArguments(train_queries=str(tmp_path / "q.txt"), num_eval_queries=10, joined_query_fraction=0.5)
    train, held_out = load_query_splits(args, 1)
    assert len(train) == 90 and set(train) | set(held_out) == set(texts)  # the split itself stays real queries
    examples = training_texts(args, train, seed=1)
    assert examples[:90] == train and len(examples) == 135 and examples == training_texts(args, train, seed=1)


def test_join_queries_draws_two_to_max_joined_queries_per_example():
    texts = [f"q{i}" for i in range(50)]  # one token each: a joined example's word count is its query count
    counts = [len(text.split()) for text in join_queries(texts, 4.0, seed=5, max_joined=5)[50:]]
    assert len(counts) == 200 and set(counts) == {2, 3, 4, 5}  # every count in 2..5 drawn, no other
    assert all(text in texts for joined in join_queries(texts, 1.0, max_joined=5)[50:] for text in joined.split())
    with pytest.raises(ValueError, match="joined_query_max must be >= 2 .* got 1"):
        join_queries(texts, 0.5, max_joined=1)


def test_dataset_and_collator(tiny_student):
    tokenizer = tiny_student.tokenizer
    tiny_student.config.max_length = 16
    texts = ["what is x", "the cat sat on the mat " * 20]
    dataset = QueryAlignmentDataset(texts, torch.arange(64.0).view(2, 32), tiny_student)
    assert dataset.token_ids.dtype == "uint8" and len(tokenizer) <= 256  # the smallest type for the vocabulary
    batch = AlignmentCollator(tokenizer)([dataset[0], dataset[1]])
    direct = tokenizer(texts, padding=True, truncation=True, max_length=16, return_tensors="pt")
    torch.testing.assert_close(batch["input_ids"], direct["input_ids"])  # padded and truncated as a direct call
    torch.testing.assert_close(batch["attention_mask"], direct["attention_mask"])
    torch.testing.assert_close(batch["teacher_embeddings"], torch.arange(64.0).view(2, 32))
    half = QueryAlignmentDataset(texts, torch.arange(64.0).view(2, 32).half(), tiny_student)  # float16 storage
    batch = AlignmentCollator(tokenizer)([half[1], half[0]])
    assert batch["teacher_embeddings"].dtype == torch.float32 and len(half) == 2
    torch.testing.assert_close(batch["teacher_embeddings"], torch.arange(64.0).view(2, 32).flip(0))
    with pytest.raises(ValueError, match="2 texts but 3 teacher embeddings"):
        QueryAlignmentDataset(["a", "b"], torch.ones(3, 32), tiny_student)


def test_dataset_puts_the_student_prompt_first(tiny_student):
    tiny_student.config.query_prompt = "query: "  # unknown words: [UNK]
    tiny_student.config.student_query_prompt = "the "
    dataset = QueryAlignmentDataset(["what is x"], torch.ones(1, 32), tiny_student)
    assert dataset[0]["input_ids"] == tiny_student.tokenizer("the what is x")["input_ids"]
    tiny_student.config.student_query_prompt = ""
    dataset = QueryAlignmentDataset(["what is x"], torch.ones(1, 32), tiny_student)
    assert dataset[0]["input_ids"] == tiny_student.tokenizer("what is x")["input_ids"]


def test_a_local_copy_of_the_configs_hub_dataset_reads_as_the_hub_one(tmp_path):
    """The shipped configs name `sentence-transformers/msmarco-corpus` (subset `query`, columns qid and text); a
    folder laid out as that repository is read through the same options."""
    from datasets import Dataset

    folder = tmp_path / "msmarco-corpus"
    (folder / "queries").mkdir(parents=True)
    Dataset.from_dict({"qid": [1, 2, 3], "text": ["what is a", " b c ", ""]}).to_parquet(
        str(folder / "queries" / "train-00000-of-00001.parquet")
    )
    (folder / "README.md").write_text(
        "---\nconfigs:\n- config_name: query\n  data_files:\n  - split: train\n    path: queries/train-*\n---\n"
    )
    assert load_queries(str(folder), split="train", column="text", subset="query") == ["what is a", "b c"]


@pytest.mark.parametrize("layout", ["parquet", "csv", "csv.gz", "json", "save_to_disk", "dict_save_to_disk"])
def test_queries_are_read_from_every_format_datasets_reads(tmp_path, layout):
    from datasets import Dataset, DatasetDict

    dataset = Dataset.from_dict({"id": [1, 2, 3], "text": ["what is x", " why y ", ""]})
    path = tmp_path / f"queries.{layout}"
    if layout == "parquet":
        dataset.to_parquet(str(path))
    elif layout.startswith("csv"):
        _write(path, b"id,text\n1,what is x\n2, why y \n3,\n")
    elif layout == "json":  # one JSON document: a list of records
        path.write_text(json.dumps([{"id": 1, "text": "what is x"}, {"id": 2, "text": " why y "}]))
    elif layout == "save_to_disk":
        dataset.save_to_disk(str(path))
    else:
        DatasetDict({"train": dataset}).save_to_disk(str(path))
    assert load_queries(str(path)) == ["what is x", "why y"]
    with pytest.raises(ValueError, match=r"has no column 'query'.*set --queries_column"):
        load_queries(str(path), column="query")
