import gzip
import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import BertTokenizer

from hfdistill.data import (
    AlignmentCollator,
    QueryAlignmentDataset,
    cached_teacher_embeddings,
    fingerprint,
    join_queries,
    load_queries,
    split_queries,
    vocabulary_queries,
)
from hfdistill.training_args import QueryDataArguments

from .conftest import SPECIAL, WORDS


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
    with pytest.raises(ValueError, match="line 1 is not `qid<TAB>text`"):
        load_queries(str(tmp_path / "bad.tsv"))
    (tmp_path / "q.jsonl").write_text(json.dumps({"query": "x"}) + "\n")
    with pytest.raises(ValueError, match="no 'text' field"):
        load_queries(str(tmp_path / "q.jsonl"))
    (tmp_path / "q.csv").write_text("x\n")
    with pytest.raises(ValueError, match="unsupported format"):
        load_queries(str(tmp_path / "q.csv"))


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
    assert args.load_splits(1) != args.load_splits(2)  # by default the training seed shuffles
    args.split_seed = 7
    assert args.load_splits(1) == args.load_splits(2) == split_queries([f"query {i}" for i in range(100)], 10, seed=7)


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
    train, held_out = args.load_splits(1)
    assert len(train) == 90 and set(train) | set(held_out) == set(texts)  # the split itself stays real queries
    examples = args.training_examples(train, seed=1)
    assert examples[:90] == train and len(examples) == 135 and examples == args.training_examples(train, seed=1)


def test_join_queries_draws_two_to_max_joined_queries_per_example():
    texts = [f"q{i}" for i in range(50)]  # one token each: a joined example's word count is its query count
    counts = [len(text.split()) for text in join_queries(texts, 4.0, seed=5, max_joined=5)[50:]]
    assert len(counts) == 200 and set(counts) == {2, 3, 4, 5}  # every count in 2..5 drawn, no other
    assert all(text in texts for joined in join_queries(texts, 1.0, max_joined=5)[50:] for text in joined.split())
    with pytest.raises(ValueError, match="joined_query_max must be >= 2 .* got 1"):
        join_queries(texts, 0.5, max_joined=1)


def test_vocabulary_queries_cover_the_vocabulary_at_real_query_lengths(tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(SPECIAL + ["[unused0]", "<extra_0>"] + WORDS) + "\n")
    tokenizer = BertTokenizer(str(tmp_path / "vocab.txt"))
    texts = ["what is", "dense retrieval model"]  # 2 and 3 tokens, five distinct words
    pseudo = vocabulary_queries(texts, 100.0, tokenizer, seed=1)
    assert len(pseudo) == 200 and pseudo == vocabulary_queries(texts, 100.0, tokenizer, seed=1)
    assert pseudo != vocabulary_queries(texts, 100.0, tokenizer, seed=2)
    assert {len(text.split()) for text in pseudo} == {2, 3}  # as long as the real queries (one token per word here)
    words = {word for text in pseudo for word in text.split()}
    assert words == set(WORDS)  # every vocabulary word, no special or placeholder token
    assert vocabulary_queries(texts, 0.0, tokenizer) == []
    with pytest.raises(ValueError, match="vocabulary_query_fraction must be >= 0, got -1"):
        vocabulary_queries(texts, -1.0, tokenizer)
    args = QueryDataArguments(joined_query_fraction=0.5, vocabulary_query_fraction=1.0)
    examples = args.training_examples(texts, seed=1, tokenizer=tokenizer)
    joined_only = QueryDataArguments(joined_query_fraction=0.5).training_examples(texts, seed=1)
    assert examples[:3] == joined_only and len(examples) == 5  # appended last: the cached prefix is reused
    with pytest.raises(ValueError, match="vocabulary_query_fraction > 0 needs the teacher's tokenizer"):
        args.training_examples(texts, seed=1)


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
    good = cached_teacher_embeddings(tiny_student, texts, tmp_path)
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


def test_dataset_and_collator(tiny_student):
    tokenizer = tiny_student.tokenizer
    tiny_student.config.max_length = 16
    texts = ["what is x", "the cat sat on the mat " * 20]
    dataset = QueryAlignmentDataset(texts, torch.arange(64.0).view(2, 32), tiny_student)
    batch = AlignmentCollator(tokenizer)([dataset[0], dataset[1]])
    direct = tokenizer(texts, padding=True, truncation=True, max_length=16, return_tensors="pt")
    torch.testing.assert_close(batch["input_ids"], direct["input_ids"])  # padded and truncated as a direct call
    torch.testing.assert_close(batch["attention_mask"], direct["attention_mask"])
    torch.testing.assert_close(batch["teacher_embeddings"], torch.arange(64.0).view(2, 32))
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
