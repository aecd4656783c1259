import gzip
import json

import pytest
from transformers import AutoTokenizer

from hfdistill.documents import (
    document_inputs,
    index_texts,
    load_documents,
    load_index_documents,
    split_sentences,
)
from hfdistill.training_args import QueryDataArguments

from .conftest import MINILM

GERMAN = (
    "Die Verteidigung der Panthers gab nur 308 Punkte ab. Kawann Short führte das Team mit 11 Sacks an! "
    "Wer war der beste Spieler? Mario Addison addierte 6½ Sacks hinzu."
)
CHINESE = "声明是用拉丁语写的，除了“我们是乞丐”之外。这句话是用德语写的！路德早期的这段时间是他最有创造力的时期？"
HINDI = "यह कथन जर्मन में था। उनके तीन सर्वाधिक ज्ञात कार्य हैं। यह चैनल सांस्कृतिक कार्यक्रम पेश करता था।"


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(MINILM)


def test_sentences_are_cut_in_every_script():
    assert split_sentences(GERMAN) == [
        "Die Verteidigung der Panthers gab nur 308 Punkte ab.",
        "Kawann Short führte das Team mit 11 Sacks an!",
        "Wer war der beste Spieler?",
        "Mario Addison addierte 6½ Sacks hinzu.",
    ]
    assert split_sentences(CHINESE) == [
        "声明是用拉丁语写的，除了“我们是乞丐”之外。",
        "这句话是用德语写的！",
        "路德早期的这段时间是他最有创造力的时期？",
    ]
    assert len(split_sentences(HINDI)) == 3 and all(s.endswith("।") for s in split_sentences(HINDI))
    assert split_sentences("A b. 3. Ok.") == []  # pieces under 8 characters are not sentences


def test_spans_are_cut_from_the_text_at_word_boundaries_within_the_token_range(tokenizer):
    documents = [("", GERMAN)]
    spans = document_inputs(documents, 40, tokenizer, ("spans",), (3, 6), seed=0)
    assert len(spans) == len(set(spans)) > 10
    words = GERMAN.split()
    for span in spans:
        assert span in GERMAN
        first, last = span.split()[0], span.split()[-1]
        assert first in words and last in words  # whole words at both ends
        assert 3 <= len(tokenizer.tokenize(span)) <= 6 + max(len(tokenizer.tokenize(w)) for w in words)
    assert document_inputs(documents, 40, tokenizer, ("spans",), (3, 6), seed=0) == spans  # the seed fixes them
    assert document_inputs(documents, 40, tokenizer, ("spans",), (3, 6), seed=1) != spans


def test_unspaced_scripts_are_cut_at_any_token(tokenizer):
    spans = document_inputs([("", CHINESE)], 20, tokenizer, ("spans",), (2, 4), seed=0)
    assert spans and all(span in CHINESE and span != CHINESE for span in spans)


def test_inputs_mix_sentences_spans_and_titles_and_a_small_corpus_gives_what_it_has(tokenizer):
    documents = [("Panthers defence", GERMAN), ("", HINDI)]
    texts = document_inputs(documents, 1000, tokenizer, ("sentences", "titles"), seed=3)
    assert sorted(texts) == sorted(split_sentences(GERMAN) + split_sentences(HINDI) + ["Panthers defence"])
    mixed = document_inputs(documents, 60, tokenizer, ("sentences", "spans", "titles"), seed=3)
    assert len(mixed) == 60 and "Panthers defence" in mixed and set(split_sentences(GERMAN)) & set(mixed)
    with pytest.raises(ValueError, match=r"document_inputs must be some of .*got \['words'\]"):
        document_inputs(documents, 5, tokenizer, ("words",))
    with pytest.raises(ValueError, match=r"document_span_tokens must be two lengths .* got \[5, 2\]"):
        document_inputs(documents, 5, tokenizer, ("spans",), (5, 2))


def test_documents_load_from_a_beir_corpus_and_every_query_format(tmp_path):
    records = [{"_id": "d1", "title": "Panthers", "text": GERMAN}, {"_id": "d2", "text": HINDI},
               {"_id": "d3", "title": "empty", "text": "  "}]  # fmt: skip
    with gzip.open(tmp_path / "corpus.jsonl.gz", "wt") as f:
        f.write("\n".join(json.dumps(r, ensure_ascii=False) for r in records))
    (tmp_path / "more.txt").write_text(CHINESE + "\n")
    documents = load_documents([str(tmp_path / "corpus.jsonl.gz"), str(tmp_path / "more.txt")])
    assert documents == [("Panthers", GERMAN), ("", HINDI), ("", CHINESE)]
    from datasets import Dataset

    Dataset.from_dict({"body": [GERMAN], "heading": ["Panthers"]}).to_parquet(str(tmp_path / "corpus.parquet"))
    assert load_documents([str(tmp_path / "corpus.parquet")], column="body", title_column="heading") == [
        ("Panthers", GERMAN)
    ]
    with pytest.raises(ValueError, match=r"corpus.parquet' has no column 'text'.*set --documents_column"):
        load_documents([str(tmp_path / "corpus.parquet")])
    with pytest.raises(FileNotFoundError, match="Document file .*missing.jsonl' does not exist"):
        load_documents([str(tmp_path / "missing.jsonl")])
    (tmp_path / "blank.txt").write_text("\n \n")
    with pytest.raises(ValueError, match="No documents found in .*blank.txt"):
        load_documents([str(tmp_path / "blank.txt")])


def test_the_recipe_options_cut_a_fraction_of_the_queries(tmp_path, tokenizer):
    (tmp_path / "corpus.txt").write_text("\n".join([GERMAN, HINDI, CHINESE] * 3))
    args = QueryDataArguments(train_queries="q.txt", train_documents=[str(tmp_path / "corpus.txt")],
                              document_fraction=0.5, document_inputs=["spans"])  # fmt: skip
    documents = load_index_documents(args)
    assert len(documents) == 9
    texts = index_texts(args, documents, tokenizer, 40, seed=1)
    assert len(texts) == 20 and texts == index_texts(args, documents, tokenizer, 40, seed=1)
    args.split_seed = 5  # the split seed, when set, draws them (as it draws the held-out queries)
    assert index_texts(args, documents, tokenizer, 40, seed=1) == index_texts(args, documents, tokenizer, 40, seed=2)
    assert index_texts(args, None, tokenizer, 40, seed=1) == []
    assert load_index_documents(QueryDataArguments(train_queries="q.txt")) is None


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("document_fraction", 0.0, "document_fraction must be a number > 0, got 0.0"),
        ("document_fraction", float("nan"), "document_fraction must be a number > 0, got nan"),
        ("document_inputs", ["sentences", "paragraphs"], r"document_inputs must be some of .*'paragraphs'"),
        ("document_span_tokens", [8], r"document_span_tokens must be two lengths .* got \[8\]"),
        ("document_span_tokens", [0, 8], r"document_span_tokens must be two lengths .* got \[0, 8\]"),
    ],
)
def test_document_options_are_checked_when_parsed(option, value, message):
    with pytest.raises(ValueError, match=message):
        QueryDataArguments(train_queries="q.txt", **{option: value})
