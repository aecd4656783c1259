"""Unlabeled training queries: read from files or the Hub, split, extended; paired with the teacher's embeddings."""

import gzip
import json
import logging
import os
import random
import zlib
from pathlib import Path

import numpy as np
import torch
from datasets import load_dataset, load_from_disk
from torch.utils.data import Dataset

from .embedding_cache import EmbeddingRows
from .modeling_asymmetric import AsymmetricDualEncoder
from .teacher_pass import cached_teacher_embeddings

logger = logging.getLogger(__name__)

LINE_SUFFIXES = (".tsv", ".tsv.gz", ".jsonl", ".jsonl.gz", ".txt", ".txt.gz")  # read line by line, errors name a line
DATASET_BUILDERS = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".csv.gz": "csv",
    ".json": "json",
    ".json.gz": "json",
    ".arrow": "arrow",
}
LOCAL_SUFFIXES = LINE_SUFFIXES + tuple(DATASET_BUILDERS)
TOKENIZE_BLOCK = 65536  # queries tokenized at a time: the tokenizer's Python lists stay small


def open_text(path: Path):
    """Read a text file, gunzipping `.gz` files."""
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _numbered_lines(path: Path):
    """(line number, text) of each non-blank line of a UTF-8 file, gunzipping `.gz` files. A byte-order mark and
    CRLF line ends are read as plain text; undecodable bytes or a broken gzip stream raise a `ValueError` naming the
    file (and line)."""
    opener = gzip.open if path.suffix == ".gz" else open
    number = 0
    try:
        with opener(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
                except UnicodeDecodeError as error:
                    raise ValueError(
                        f"{path}: line {number} is not UTF-8 text ({error.reason} at byte {error.start}); "
                        "re-encode the file as UTF-8."
                    ) from None
                if line.strip():
                    yield number, line
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise ValueError(
            f"{path}: the gzip stream is truncated or corrupt after line {number} ({error}); re-create the file."
        ) from None


def _read_lines(path: Path, column: str, extra: tuple[str, ...], column_option: str) -> dict[str, list]:
    """`column` (and the `extra` fields of jsonl records, None where absent) of a line-per-record file."""
    name = path.name.removesuffix(".gz")
    records = {column: [], **{field: [] for field in extra}}
    for number, line in _numbered_lines(path):
        if name.endswith(".tsv"):
            row = line.split("\t", 1)
            if len(row) != 2:
                raise ValueError(f"{path}: line {number} is not `id<TAB>text`: {line[:80]!r}")
            record = {column: row[1]}
        elif name.endswith(".jsonl"):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{path}: line {number} is not JSON ({error.msg}, column {error.colno}); each line is one record."
                ) from None
            if not isinstance(record, dict) or column not in record:
                fields = sorted(record) if isinstance(record, dict) else type(record).__name__
                raise ValueError(
                    f"{path}: line {number} has no {column!r} field (it has {fields}); set {column_option}."
                )
        else:
            record = {column: line}
        for field, values in records.items():
            values.append(record.get(field))
    return records


def _read_dataset(source: str, split: str, subset: str | None, what: str):
    """A `datasets.Dataset` from a local file of a format `datasets` reads, a `save_to_disk` folder, a local dataset
    folder or a Hub dataset id; one `ValueError` naming the source when none of them reads it."""
    path = Path(source).expanduser()
    builder = next((b for suffix, b in DATASET_BUILDERS.items() if path.name.endswith(suffix)), None)
    try:
        if builder is not None:
            return load_dataset(builder, data_files=str(path), split="train")
        if (path / "dataset_info.json").is_file() and (path / "state.json").is_file():  # Dataset.save_to_disk
            return load_from_disk(str(path))
        if (path / "dataset_dict.json").is_file():  # DatasetDict.save_to_disk
            return load_from_disk(str(path))[split]
        return load_dataset(source, subset, split=split)
    except Exception as error:  # noqa: BLE001 - datasets raises many types; the user needs what and where
        kind = "file" if builder else "dataset folder" if path.is_dir() else "Hub dataset"
        raise ValueError(
            f"Cannot read {what} from {source!r} as a {kind} ({type(error).__name__}: {str(error)[:300]}); give a "
            f"{'/'.join(LOCAL_SUFFIXES)} file, a dataset folder or a Hub dataset id."
        ) from error


def load_records(
    source: str,
    column: str = "text",
    split: str = "train",
    subset: str | None = None,
    extra: tuple[str, ...] = (),
    what: str = "queries",
    column_option: str | None = None,
) -> dict[str, list]:
    """The `column` of every record of a local `.tsv[.gz]` (`id\\ttext`), `.jsonl[.gz]` or `.txt[.gz]` file, a file
    `datasets` reads (`.parquet`, `.csv[.gz]`, `.json[.gz]`, `.arrow`), a `save_to_disk` folder or a Hub dataset, and
    the `extra` fields where the source has them (None otherwise). Errors name what is read (`queries`,
    `documents`) and the option that sets its column (`--queries_column` by default)."""
    kind, column_option = {"queries": "Query", "documents": "Document"}[what], column_option or f"--{what}_column"
    path = Path(source).expanduser()
    if path.name.endswith(LOCAL_SUFFIXES) or path.is_file():
        if path.is_dir():
            raise ValueError(f"{kind} file {source!r} is a folder; give the file itself.")
        if not path.is_file():
            raise FileNotFoundError(f"{kind} file {source!r} does not exist.")
        if not path.name.endswith(LOCAL_SUFFIXES):
            raise ValueError(f"{kind} file {source!r}: unsupported format; use one of {LOCAL_SUFFIXES}.")
        if path.name.endswith(LINE_SUFFIXES):
            return _read_lines(path, column, extra, column_option)
    dataset = _read_dataset(source, split, subset, what)
    if column not in dataset.column_names:
        raise ValueError(
            f"Dataset {source!r} has no column {column!r}; columns: {dataset.column_names}; set {column_option}."
        )
    return {
        field: dataset[field] if field in dataset.column_names else [None] * len(dataset) for field in (column, *extra)
    }


def load_queries(source: str, split: str = "train", column: str = "text", subset: str | None = None) -> list[str]:
    """Query texts (stripped, blank ones dropped) from any source `load_records` reads."""
    texts = load_records(source, column, split, subset)[column]
    texts = [t.strip() for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise ValueError(f"No queries found in {source!r}.")
    return texts


def split_queries(
    texts: list[str], num_eval: int, max_train_samples: int | None = None, seed: int = 42, dedup: bool = True
) -> tuple[list[str], list[str]]:
    """Deduplicate, shuffle with `seed`, hold out `num_eval` queries, cap the rest at `max_train_samples`."""
    if dedup:
        texts = list(dict.fromkeys(texts))
    texts = list(texts)
    random.Random(seed).shuffle(texts)
    if num_eval >= len(texts):
        raise ValueError(f"num_eval_queries={num_eval} leaves no training queries out of {len(texts)}.")
    eval_texts, train_texts = texts[:num_eval], texts[num_eval:]
    return train_texts[:max_train_samples] if max_train_samples else train_texts, eval_texts


def join_queries(texts: list[str], fraction: float, seed: int = 42, max_joined: int = 2) -> list[str]:
    """`texts` followed by `fraction` x as many examples of 2 to `max_joined` of them joined into one longer text.

    Search queries are short, so students see few long inputs and align them worst; joined queries add long
    query-like inputs. The plain queries come first, unchanged, so the teacher
    embeddings cached for them are reused and only the joined texts are embedded.
    """
    if fraction < 0:
        raise ValueError(f"joined_query_fraction must be >= 0, got {fraction}.")
    if max_joined < 2:
        raise ValueError(f"joined_query_max must be >= 2 (a joined example has two or more), got {max_joined}.")
    rng = random.Random(seed)

    def joined() -> str:
        return " ".join(texts[rng.randrange(len(texts))] for _ in range(rng.randint(2, max_joined)))

    return texts + [joined() for _ in range(round(len(texts) * fraction))]


def load_query_splits(data_args, seed: int) -> tuple[list[str], list[str]]:
    """(training, held-out) queries of a `QueryDataArguments`: loaded, deduplicated, shuffled with its `split_seed`
    (else `seed`); the cap on training queries spares the held-out ones."""
    queries = load_queries(
        data_args.train_queries, data_args.queries_split, data_args.queries_column, data_args.queries_subset
    )
    return split_queries(
        queries, data_args.num_eval_queries, data_args.max_train_samples, data_args.split_seed_for(seed)
    )


def training_texts(data_args, train_queries: list[str], seed: int) -> list[str]:
    """The texts to train on: the training queries, then joined ones (`joined_query_fraction` > 0), which follow
    them so that the teacher embeddings cached for a run without them are reused."""
    seed = data_args.split_seed_for(seed)
    return join_queries(train_queries, data_args.joined_query_fraction, seed, data_args.joined_query_max)


class QueryAlignmentDataset(Dataset):
    """(tokenized query, teacher embedding) pairs.

    Queries are tokenized once up front, as the student reads them (`model.tokenize_queries`: its prompt first), not
    again every epoch; the trainer encodes each random batch in chunks of similar length from their token counts, and
    `lengths` gives those counts to the `group_by_length` sampler too. Token ids are kept in one flat array of the
    smallest integer type that holds the vocabulary (millions of queries as Python lists would take gigabytes); the
    teacher embeddings stay as given: a tensor, or `EmbeddingRows` read from the cache file as items are taken.
    """

    def __init__(
        self, texts: list[str], teacher_embeddings: torch.Tensor | EmbeddingRows, model: AsymmetricDualEncoder
    ):
        if len(texts) != teacher_embeddings.shape[0]:
            raise ValueError(f"{len(texts)} texts but {teacher_embeddings.shape[0]} teacher embeddings.")
        ids, lengths = [], []
        dtype = np.min_scalar_type(len(model.query_tokenizer) - 1)  # uint16 for vocabularies of up to 65,536 tokens
        for start in range(0, len(texts), TOKENIZE_BLOCK):
            block = model.tokenize_queries(texts[start : start + TOKENIZE_BLOCK])["input_ids"]
            ids.append(np.fromiter((i for row in block for i in row), dtype))
            lengths.extend(len(row) for row in block)
        self.token_ids = np.concatenate(ids) if ids else np.empty(0, dtype)
        self.offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
        self.teacher_embeddings = teacher_embeddings

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> list[int]:
        """Token count of each query, from the offsets: what the `group_by_length` sampler sorts by, without reading
        every item (and its teacher embedding) to count them."""
        return np.diff(self.offsets).tolist()

    def __getitem__(self, index: int) -> dict:
        input_ids = self.token_ids[self.offsets[index] : self.offsets[index + 1]].tolist()
        return {"input_ids": input_ids, "teacher_embeddings": self.teacher_embeddings[index]}


def alignment_datasets(
    model: AsymmetricDualEncoder,
    text_lists: list[list[str]],
    cache_dir: str | os.PathLike,
    batch_size: int = 256,
    shared_prefixes: list[int] | None = None,
    dtype: str = "float32",
    precision: str = "float32",
) -> list[QueryAlignmentDataset]:
    """One `QueryAlignmentDataset` per list of texts, with the teacher's embeddings from the cache (or computed in
    `precision` and stored as `dtype`), read from its file as items are taken; `shared_prefixes[i]` leading texts of
    list i are cached on their own too (see `cached_teacher_embeddings`). Collective under several processes: each
    calls it, they share the teacher pass."""
    return [
        QueryAlignmentDataset(
            texts,
            cached_teacher_embeddings(
                model, texts, cache_dir, batch_size, shared, dtype=dtype, precision=precision, rows=True
            ),
            model,
        )
        for texts, shared in zip(text_lists, shared_prefixes or [0] * len(text_lists), strict=True)
    ]


class AlignmentCollator:
    """Pads a batch of tokenized queries and stacks their teacher embeddings."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, features: list[dict]) -> dict:
        batch = self.tokenizer.pad([{"input_ids": f["input_ids"]} for f in features], return_tensors="pt")
        batch["teacher_embeddings"] = torch.stack([f["teacher_embeddings"] for f in features]).float()
        return dict(batch)
