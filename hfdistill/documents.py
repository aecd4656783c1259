"""The documents of the user's own index as training text for the student's query side.

A student learns from queries, yet it serves queries about the documents of one index, in their language and domain.
Texts cut from those documents at query length (sentences, spans of a few tokens, titles) show it that vocabulary;
the teacher embeds them with its query prompt, so they are aligned exactly as queries are (LEAF, arXiv 2509.12539,
trains its query student on documents beside queries for the same reason).
"""

import random
import re

from .data import load_records

DOCUMENT_INPUTS = ("sentences", "spans", "titles")
SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|(?<=[。！？；।؟])\s*")  # Latin, CJK, Devanagari and Arabic enders
MIN_SENTENCE_CHARACTERS = 8  # shorter pieces are list markers, numbers and abbreviations, not sentences


def load_documents(
    sources: list[str],
    split: str = "train",
    column: str = "text",
    subset: str | None = None,
    title_column: str = "title",
) -> list[tuple[str, str]]:
    """`(title, text)` of every non-empty document of one or several corpora (`""` where a document has no title): a
    BEIR `corpus.jsonl[.gz]`, any file or dataset `data.load_records` reads, or a Hub dataset."""
    documents = []
    for source in sources:
        records = load_records(source, column, split, subset, extra=(title_column,), what="documents")
        found = [
            ((title or "").strip() if isinstance(title, str) else "", text.strip())
            for text, title in zip(records[column], records[title_column], strict=True)
            if isinstance(text, str) and text.strip()
        ]
        if not found:
            raise ValueError(f"No documents found in {source!r}.")
        documents.extend(found)
    return documents


def check_document_inputs(inputs, span_tokens) -> None:
    """A `ValueError` naming the option unless `inputs` are some of `DOCUMENT_INPUTS` and `span_tokens` two lengths
    1 <= shortest <= longest."""
    unknown = sorted(set(inputs) - set(DOCUMENT_INPUTS))
    if unknown or not inputs:
        raise ValueError(f"document_inputs must be some of {DOCUMENT_INPUTS}, got {list(inputs)}.")
    if len(span_tokens) != 2 or not 1 <= span_tokens[0] <= span_tokens[1]:
        raise ValueError(f"document_span_tokens must be two lengths 1 <= min <= max, got {list(span_tokens)}.")


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`, cut after sentence-ending punctuation of Latin, CJK, Devanagari and Arabic script."""
    return [s.strip() for s in SENTENCE_END.split(text) if len(s.strip()) >= MIN_SENTENCE_CHARACTERS]


def _word_starts(text: str, tokenizer) -> tuple[list[tuple[int, int]], list[int]]:
    """The character offsets of the tokenizer's tokens of `text`, and the tokens that start a word: those after a
    space, or every token in a mostly unspaced script (e.g. Chinese)."""
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    offsets = [(start, end) for start, end in encoded["offset_mapping"] if end > start]
    starts = [i for i, (start, _) in enumerate(offsets) if start == 0 or text[start - 1].isspace()]
    return offsets, starts if len(starts) * 3 >= len(offsets) else list(range(len(offsets)))


def _token_span(text: str, words: tuple, rng: random.Random, lengths: tuple[int, int]) -> str:
    """A span of `lengths[0]` to `lengths[1]` tokens of `text` (`words`: `_word_starts` of it), cut from the text
    itself between word boundaries."""
    offsets, starts = words
    if not offsets:
        return ""
    size = rng.randint(*lengths)
    first = rng.choice([i for i in starts if i + lengths[0] <= len(offsets)] or [0])
    ends = [i for i in starts if i > first] + [len(offsets)]
    last = next((i for i in ends if i >= first + size), ends[-1])  # the word that holds the span's last token ends it
    return text[offsets[first][0] : offsets[last - 1][1]].strip()


def document_inputs(
    documents: list[tuple[str, str]],
    count: int,
    tokenizer,
    inputs: tuple[str, ...] = ("sentences", "spans"),
    span_tokens: tuple[int, int] = (4, 24),
    seed: int = 42,
) -> list[str]:
    """Up to `count` distinct query-length training texts cut from `documents` (`(title, text)` pairs).

    Each text comes from a document drawn at random and one of `inputs` drawn at random: `sentences` (one sentence),
    `spans` (`span_tokens[0]` to `span_tokens[1]` of the `tokenizer`'s tokens, starting at a word), `titles` (the
    document's title, where it has one). A small corpus may hold fewer distinct texts than `count`; all of them are
    returned then.
    """
    check_document_inputs(inputs, span_tokens)
    rng, texts, pieces = random.Random(seed), {}, {}  # pieces: a document's sentences and word starts, once
    for _ in range(10 * count):  # a small corpus runs out of distinct sentences and titles
        if len(texts) >= count:
            break
        index = rng.randrange(len(documents))
        title, text = documents[index]
        kind = rng.choice(inputs)
        if kind == "titles":
            piece = title
        elif kind == "sentences":
            if (kind, index) not in pieces:
                pieces[kind, index] = split_sentences(text)
            piece = rng.choice(pieces[kind, index]) if pieces[kind, index] else ""
        else:
            if (kind, index) not in pieces:
                pieces[kind, index] = _word_starts(text, tokenizer)
            piece = _token_span(text, pieces[kind, index], rng, span_tokens)
        if piece:
            texts.setdefault(piece, None)
    return list(texts)


def load_index_documents(data_args) -> list[tuple[str, str]] | None:
    """The documents a `QueryDataArguments` names (`train_documents`), read and checked; None when it names none."""
    if not data_args.train_documents:
        return None
    return load_documents(
        data_args.train_documents,
        data_args.documents_split,
        data_args.documents_column,
        data_args.documents_subset,
        data_args.documents_title_column,
    )


def index_texts(
    data_args, documents: list[tuple[str, str]] | None, tokenizer, num_queries: int, seed: int
) -> list[str]:
    """The training texts `data_args` cuts from `documents`: `document_fraction` x `num_queries` of its
    `document_inputs` (none without documents), drawn with its split seed."""
    if not documents:
        return []
    count = round(num_queries * data_args.document_fraction)
    return document_inputs(
        documents,
        count,
        tokenizer,
        tuple(data_args.document_inputs),
        tuple(data_args.document_span_tokens),
        data_args.split_seed_for(seed),
    )
